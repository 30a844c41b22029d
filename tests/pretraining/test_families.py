"""Continued pretraining of real model families (Llama 3.1, Qwen3, Gemma 3) keeps their
conventions: the source's generation_config, the family's document tokens in the training
stream, and a tokenizer with special tokens beyond the text model's embeddings (Gemma 3).

The tokenizers are the families' own (../shared/data/tokenizers, see SOURCES.md there); the
models are tiny random-initialised ones of the real architectures with the real vocabulary
sizes and special-token ids, built once per module."""
import json
import random
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

import tunesmith as ts
from tunesmith.core.config import coerce
from tunesmith.core.errors import UserError
from tunesmith.pretraining.config import PretrainConfig
from tunesmith.pretraining.data import build_data
from tunesmith.pretraining.packing import document_boundaries
from tunesmith.pretraining.stage import check_vocabulary, generation_config
from tunesmith.pretraining.tokenizer import train_tokenizer
from helpers import tiny_config

from families.tiny_models import DOCS, FAMILIES, SHARED, build as _build, tokenizer_dir as _tokenizer_dir


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        _tokenizer_dir(family)
        if family not in built:
            built[family] = _build(family, tmp_path_factory.mktemp(family))
        return built[family]
    return get


@pytest.fixture(scope="module")
def tokenizer():
    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = AutoTokenizer.from_pretrained(_tokenizer_dir(family))
        return loaded[family]
    return get


def _generation(folder: Path) -> dict:
    data = json.loads((folder / "generation_config.json").read_text())
    data.pop("transformers_version", None)
    return data


@pytest.mark.parametrize("family", sorted(SHARED))
def test_continued_pretraining_keeps_the_family_conventions(family, source, tokenizer, tmp_path):
    spec, src = FAMILIES[family], source(family)
    corpus = tmp_path / "domain.txt"
    corpus.write_text("\n\n".join(DOCS))
    cfg = tiny_config(tmp_path, corpus, model={"from_pretrained": str(src)},
                      data={"block_size": 16, "validation_fraction": 0},
                      train={"max_steps": 2, "batch_size": 2, "warmup_steps": 0, "logging_steps": 1},
                      run={"sample_tokens": 2})
    result = ts.pretrain(cfg)
    assert result.metrics["steps"] == 2
    # 1. the saved generation_config is the source's: every EOS id and the sampling settings
    assert _generation(result.model_path) == _generation(src) == spec["generation"]
    saved, before = (json.loads((f / "config.json").read_text()) for f in (result.model_path, src))
    assert all(saved.get(k) == before.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id"))
    # 2. documents are delimited by the family's document tokens, recorded in the run
    (bos, bos_id), (end, end_id) = spec["bos"], spec["end"]
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["document_boundaries"] == {"bos": bos, "bos_id": bos_id, "end": end, "end_id": end_id}
    tok = tokenizer(family)
    data = build_data(coerce(PretrainConfig, cfg), tok, vocab_limit=spec["config"]["vocab_size"])
    stream = [t for block in data.train.blocks for t in block]
    turn_end = tok.convert_tokens_to_ids(spec["turn_end"])
    assert turn_end not in stream and stream.count(end_id) == len(DOCS) and stream[-1] == end_id
    shuffled = DOCS[:]
    random.Random(cfg["train"].get("seed", 42)).shuffle(shuffled)
    expected = [t for d in shuffled for t in
                ([bos_id] if bos_id is not None else []) + tok(d, add_special_tokens=False)["input_ids"] + [end_id]]
    assert stream == expected
    if family == "gemma3":  # 3. 262145 tokenizer entries over 262144 embeddings: accepted, reloads stock
        assert len(tok) == 262145 and tok.convert_ids_to_tokens(262144) == "<image_soft_token>"
        assert json.loads((result.model_path / "tokenizer.json").read_text())["added_tokens"][-1]["id"] == 262144
        model = AutoModelForCausalLM.from_pretrained(result.model_path)
        assert model.get_input_embeddings().num_embeddings == 262144
        assert model.generation_config.eos_token_id == [1, 106]
        ids = tok("The river", return_tensors="pt")
        assert model(**ids).logits.shape[-1] == 262144


def test_a_special_token_the_model_has_no_row_for_is_refused_in_the_text(tokenizer, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(DOCS[:4] + ["a picture <image_soft_token> here"]))
    cfg = coerce(PretrainConfig, tiny_config(tmp_path, corpus, data={"block_size": 16}))
    gemma = tokenizer("gemma3")
    with pytest.raises(UserError, match=r"'<image_soft_token>' \(id 262144\).*no embedding"):
        build_data(cfg, gemma, vocab_limit=262144)  # what the stage passes: the model's embedding rows
    build_data(cfg, gemma, vocab_limit=262145)  # a model with a row for it takes the same text


def test_a_real_vocabulary_mismatch_is_still_refused(source, tokenizer, tmp_path):
    # Qwen3's tokenizer (151669 entries) on the Llama model (128256 rows): ordinary tokens lack rows
    cfg = tiny_config(tmp_path, None, model={"from_pretrained": str(source("llama3_1"))},
                      tokenizer={"path": str(_tokenizer_dir("qwen3"))}, train={"max_steps": 1})
    with pytest.raises(UserError, match="tokenizer has 151669 tokens but the model only 128256 embeddings"):
        ts.pretrain(cfg)
    gemma = tokenizer("gemma3")
    check_vocabulary(gemma, 262144, "m")  # only <image_soft_token> beyond: fine
    with pytest.raises(UserError, match=r"4 of them are not special tokens \('<unused6238>' \(id 262140\)"):
        check_vocabulary(gemma, 262140, "m")


@pytest.mark.parametrize("family", sorted(SHARED))
def test_document_boundaries_are_read_from_the_tokenizer(family, tokenizer):
    b, spec = document_boundaries(tokenizer(family)), FAMILIES[family]
    assert ((b.bos, b.bos_id), (b.end, b.end_id)) == (spec["bos"], spec["end"])


def test_tunesmiths_own_tokenizer_keeps_eos_only_between_documents():
    tok = train_tokenizer(["hello world, the river runs"] * 50, vocab_size=300)
    b = document_boundaries(tok)
    assert (b.bos_id, b.end_id, b.end) == (None, tok.eos_token_id, "<|endoftext|>")


def test_generation_config_without_a_source_file_keeps_the_config_eos_list(tokenizer, tmp_path):
    import copy

    import transformers

    tok = copy.deepcopy(tokenizer("llama3_1"))
    tok.pad_token = tok.eos_token  # as tunesmith's loader does
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, bos_token_id=128000,
                                      eos_token_id=[128001, 128008, 128009])
    model = transformers.LlamaForCausalLM(config)
    model.generation_config = GenerationConfig.from_model_config(config)
    gen = generation_config(model, tok, str(tmp_path))  # no generation_config.json there
    assert (gen.bos_token_id, gen.eos_token_id, gen.pad_token_id) == (128000, [128001, 128008, 128009], 128009)
    # a different tokenizer given explicitly: its ids replace the source's
    gen = generation_config(model, tokenizer("qwen3"), str(tmp_path), own_tokenizer=False)
    assert (gen.eos_token_id, gen.pad_token_id) == (151645, 151643)
