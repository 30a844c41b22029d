"""Build the pretraining datasets: documents -> tokens (between the tokenizer's document
boundaries, see packing.document_boundaries) -> packed blocks, with a held-out validation split
and the optional curriculum order."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from torch.utils.data import Dataset

from ..core.errors import UserError
from .config import PretrainConfig
from .curriculum import length_scores, perplexity_scores
from .documents import corpus_specs, iter_documents
from .packing import (DocumentBoundaries, PackedDataset, StreamingPackedDataset, document_boundaries, pack,
                      tokenize_documents)

MIN_DOCS_FOR_DOC_SPLIT = 20


@dataclass
class PretrainData:
    train: Dataset
    validation: Dataset | None
    stats: dict = field(default_factory=dict)
    boundaries: DocumentBoundaries | None = None  # the tokens around each document


def documents(cfg: PretrainConfig):
    d = cfg.data
    docs = iter_documents(corpus_specs(d.train), d.text_field, d.split_text)
    return itertools.islice(docs, d.max_documents) if d.max_documents else docs


def tokenizer_texts(cfg: PretrainConfig):
    return itertools.islice(documents(cfg), cfg.tokenizer.train_documents)


def build_data(cfg: PretrainConfig, tokenizer, reference_model=None, vocab_limit: int | None = None) -> PretrainData:
    """`vocab_limit`: the model's embedding rows; a document that would produce a token id at or
    above it is refused (a tokenizer may name special tokens the model has no row for)."""
    boundaries = document_boundaries(tokenizer)
    pad = tokenizer.pad_token_id
    if vocab_limit is not None and pad is not None and pad >= vocab_limit:
        raise UserError(f"the tokenizer's pad token {tokenizer.pad_token!r} (id {pad}) has no embedding in the "
                        f"model ({vocab_limit} rows)", field="tokenizer.path",
                        fix="use the model's own tokenizer, or give it a pad token the model has")
    if cfg.data.streaming:
        return _streaming(cfg, tokenizer, boundaries, vocab_limit)
    docs = list(documents(cfg))
    if not docs:
        raise UserError("the training corpus is empty (no non-blank documents)",
                        file=", ".join(corpus_specs(cfg.data.train)), field="data.train")
    random.Random(cfg.train.seed).shuffle(docs)
    ids = list(tokenize_documents(tokenizer, docs, boundaries=boundaries, vocab_limit=vocab_limit))
    bs = cfg.data.block_size
    frac = cfg.data.validation_fraction
    if len(ids) >= MIN_DOCS_FOR_DOC_SPLIT or frac == 0:
        n_val = round(len(ids) * frac) if frac else 0
        val_ids, train_ids = ids[:n_val], ids[n_val:]
        train_ids = _curriculum_order(cfg, train_ids, reference_model)
        train_blocks = list(pack(train_ids, bs))
        val_blocks = list(pack(val_ids, bs))
    else:  # a few long documents: hold out the tail blocks instead
        blocks = list(pack(ids, bs))
        n_val = max(1, round(len(blocks) * frac))
        if len(blocks) - n_val < 1:
            raise UserError(f"the corpus is too small: {len(blocks)} block(s) of {bs} tokens",
                            field="data.train", fix="add text or lower data.block_size")
        train_blocks, val_blocks = blocks[:-n_val], blocks[-n_val:]
        if cfg.curriculum.enabled:
            raise UserError(f"curriculum needs at least {MIN_DOCS_FOR_DOC_SPLIT} documents, got {len(ids)}",
                            field="curriculum.enabled", fix="split the corpus into documents (data.split_text)")
    train = PackedDataset(train_blocks, bs, pad)
    val = PackedDataset(val_blocks, bs, pad) if val_blocks else None
    stats = {"documents": len(ids), "train_blocks": len(train), "validation_blocks": len(val) if val else 0,
             "train_tokens": train.num_tokens(), "validation_tokens": val.num_tokens() if val else 0}
    return PretrainData(train, val, stats, boundaries)


def _curriculum_order(cfg: PretrainConfig, docs_ids: list[list[int]], reference_model) -> list[list[int]]:
    cur = cfg.curriculum
    if not cur.enabled:
        return docs_ids
    if cur.score == "length":
        scores = length_scores([len(x) for x in docs_ids])
    else:
        if reference_model is None:
            raise UserError("perplexity scoring needs a reference model", field="curriculum.reference_model",
                            fix="name a local causal-LM folder that shares the tokenizer")
        scores = perplexity_scores(reference_model, docs_ids)
    order = sorted(range(len(docs_ids)), key=lambda i: (scores[i], i))
    return [docs_ids[i] for i in order]


def _streaming(cfg: PretrainConfig, tokenizer, boundaries: DocumentBoundaries,
               vocab_limit: int | None) -> PretrainData:
    if cfg.curriculum.enabled:
        raise UserError("curriculum ordering needs the whole corpus in memory", field="curriculum.enabled",
                        fix="set data.streaming: false, or curriculum.enabled: false")
    if next(iter(documents(cfg)), None) is None:
        raise UserError("the training corpus is empty (no non-blank documents)",
                        file=", ".join(corpus_specs(cfg.data.train)), field="data.train")
    make = lambda: documents(cfg)  # noqa: E731 - a fresh pass over the stream
    n_val = cfg.data.validation_blocks
    train = StreamingPackedDataset(make, tokenizer, cfg.data.block_size, skip_blocks=n_val,
                                   boundaries=boundaries, vocab_limit=vocab_limit)
    val = StreamingPackedDataset(make, tokenizer, cfg.data.block_size, take_blocks=n_val,
                                 boundaries=boundaries, vocab_limit=vocab_limit)
    return PretrainData(train, val, {"streaming": True, "validation_blocks": n_val}, boundaries)
