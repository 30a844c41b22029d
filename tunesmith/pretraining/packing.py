"""Tokenize documents, mark their boundaries the way the tokenizer's family does (BOS before
each document when the tokenizer adds one, the document-end token after), and pack them into
fixed-size blocks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import Dataset, IterableDataset

from ..core.errors import UserError

IGNORE_INDEX = -100
# end-of-document tokens of the common families, in order of preference (Llama 3, GPT-2/Qwen/
# tunesmith's own BPE, Gemma, Llama 2/Mistral/T5): the token a base model saw between documents,
# unlike the end-of-turn token a chat tokenizer names as its EOS (<|eot_id|>, <|im_end|>, <end_of_turn>)
DOCUMENT_END_TOKENS = ("<|end_of_text|>", "<|endoftext|>", "<eos>", "</s>")


@dataclass(frozen=True)
class DocumentBoundaries:
    """The tokens around each pretraining document: `bos` (or None) before it, `end` after it."""
    bos_id: int | None
    bos: str | None
    end_id: int
    end: str

    def wrap(self, ids: list[int]) -> list[int]:
        return ([self.bos_id] if self.bos_id is not None else []) + ids + [self.end_id]

    def record(self) -> dict:
        return {"bos": self.bos, "bos_id": self.bos_id, "end": self.end, "end_id": self.end_id}


def document_boundaries(tokenizer) -> DocumentBoundaries:
    """The tokenizer's pretraining conventions, read from the tokenizer (not from a family name):
    BOS before each document if the tokenizer puts one in front of text it encodes; after each
    document the first of DOCUMENT_END_TOKENS that is a special token of its vocabulary, else its
    EOS. tunesmith's own BPE tokenizer (no BOS added, EOS `<|endoftext|>`) gives `doc <|endoftext|>`;
    Llama 3 `<|begin_of_text|> doc <|end_of_text|>`; Qwen `doc <|endoftext|>`; Gemma `<bos> doc <eos>`."""
    end_id, end = tokenizer.eos_token_id, tokenizer.eos_token
    special = set(tokenizer.all_special_tokens) | {
        t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)}
    for token in DOCUMENT_END_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token) if token in special else None
        if token_id is not None and tokenizer.convert_ids_to_tokens(token_id) == token:  # not the unknown token
            end_id, end = token_id, token
            break
    bos_id = tokenizer.bos_token_id
    if bos_id is not None:
        probe = "a"
        with_special = tokenizer(probe)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        adds_bos = with_special[:1] == [bos_id] and plain[:1] != [bos_id]
        if not adds_bos or bos_id == end_id:  # one token that both opens and ends: the end alone separates
            bos_id = None
    return DocumentBoundaries(bos_id, tokenizer.convert_ids_to_tokens(bos_id) if bos_id is not None else None,
                              end_id, end)


def tokenize_documents(tokenizer, docs: Iterable[str], batch_size: int = 256,
                       boundaries: DocumentBoundaries | None = None,
                       vocab_limit: int | None = None) -> Iterator[list[int]]:
    """Token ids of each document between its boundaries (`document_boundaries(tokenizer)` by
    default). With `vocab_limit` (the model's embedding rows), a token id at or above it is refused
    with the token named: the model has no embedding for it."""
    b = boundaries or document_boundaries(tokenizer)
    batch: list[str] = []

    def encoded(texts: list[str]) -> Iterator[list[int]]:
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            ids = b.wrap(ids)
            if vocab_limit is not None and max(ids) >= vocab_limit:
                _refuse_beyond(tokenizer, ids, vocab_limit)
            yield ids

    for doc in docs:
        batch.append(doc)
        if len(batch) == batch_size:
            yield from encoded(batch)
            batch = []
    if batch:
        yield from encoded(batch)


def _refuse_beyond(tokenizer, ids: list[int], vocab_limit: int) -> None:
    beyond = sorted({i for i in ids if i >= vocab_limit})
    names = ", ".join(f"{tokenizer.convert_ids_to_tokens(i)!r} (id {i})" for i in beyond[:5])
    raise UserError(f"the training text contains {names}, a token the model has no embedding for "
                    f"(it has {vocab_limit} rows); this special token is not text the model can learn",
                    field="data.train", fix="remove that token's text from the corpus")


def pack(token_lists: Iterable[list[int]], block_size: int) -> Iterator[list[int]]:
    """Concatenate and cut into blocks of `block_size`; the last block may be shorter.
    No token is dropped."""
    buf: list[int] = []
    for ids in token_lists:
        buf.extend(ids)
        while len(buf) >= block_size:
            yield buf[:block_size]
            buf = buf[block_size:]
    if buf:
        yield buf


def to_example(block: list[int], block_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A training example; a short last block is padded, its padding masked out of the loss (a
    tokenizer without a pad token pads with id 0: no real token attends to it or predicts it)."""
    n = len(block)
    ids = torch.full((block_size,), 0 if pad_id is None else pad_id, dtype=torch.long)
    ids[:n] = torch.tensor(block, dtype=torch.long)
    labels = ids.clone()
    labels[n:] = IGNORE_INDEX
    mask = torch.zeros(block_size, dtype=torch.long)
    mask[:n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class PackedDataset(Dataset):
    """Blocks held in memory (map-style: shuffled by the Trainer, or by a curriculum sampler), as
    one `[blocks, block_size]` tensor (8 bytes a token, not a Python list of ints). Only the last
    block can be short; its padded example is built once. An example is views into that tensor,
    so a batch costs one `torch.stack` per key (`stack_examples`)."""

    def __init__(self, blocks: list[list[int]], block_size: int, pad_id: int):
        self.block_size, self.pad_id = block_size, pad_id
        self.lengths = [len(b) for b in blocks]
        self.ids = torch.zeros((len(blocks), block_size), dtype=torch.long)  # short rows: to_example's padding
        full = [i for i, n in enumerate(self.lengths) if n == block_size]
        if full:
            self.ids[full] = torch.tensor([blocks[i] for i in full], dtype=torch.long)
        self._short = {i: to_example(b, block_size, pad_id) for i, b in enumerate(blocks) if len(b) < block_size}
        for i, example in self._short.items():
            self.ids[i] = example["input_ids"]
        self._ones = torch.ones(block_size, dtype=torch.long)

    @property
    def blocks(self) -> list[list[int]]:
        """The blocks as token-id lists (the short last one unpadded)."""
        return [row[:n].tolist() for row, n in zip(self.ids, self.lengths)]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = int(i) + (len(self.lengths) if i < 0 else 0)
        if i in self._short:
            return self._short[i]
        row = self.ids[i]
        return {"input_ids": row, "labels": row, "attention_mask": self._ones}

    def num_tokens(self) -> int:
        return sum(self.lengths)


def stack_examples(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The pretraining collator: blocks all have `block_size` tokens (a short one is padded on the
    right), so a batch is one `torch.stack` per key; no tokenizer padding pass."""
    return {key: torch.stack([e[key] for e in examples]) for key in examples[0]}


class StreamingPackedDataset(IterableDataset):
    """Blocks produced on the fly from a document stream (corpora larger than memory).
    `make_docs` is called anew for each pass; `skip_blocks` drops the held-out head."""

    def __init__(self, make_docs: Callable[[], Iterable[str]], tokenizer, block_size: int,
                 skip_blocks: int = 0, take_blocks: int | None = None,
                 boundaries: DocumentBoundaries | None = None, vocab_limit: int | None = None):
        self.make_docs, self.tokenizer, self.block_size = make_docs, tokenizer, block_size
        self.skip_blocks, self.take_blocks = skip_blocks, take_blocks
        self.boundaries, self.vocab_limit = boundaries or document_boundaries(tokenizer), vocab_limit

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        pad = self.tokenizer.pad_token_id
        while True:
            produced = 0
            docs = tokenize_documents(self.tokenizer, self.make_docs(), boundaries=self.boundaries,
                                      vocab_limit=self.vocab_limit)
            blocks = pack(docs, self.block_size)
            for i, block in enumerate(blocks):
                if i < self.skip_blocks:
                    continue
                if self.take_blocks is not None and produced >= self.take_blocks:
                    return
                produced += 1
                yield to_example(block, self.block_size, pad)
            if self.take_blocks is not None or produced == 0:
                return  # held-out set: one pass; training: loop over the corpus again
