"""Tiny random-initialised models of the families users fine-tune, as a user's local checkpoint
folder looks: the real architecture with the real vocabulary size and special-token ids, the
family's own tokenizer and chat template (`../shared/data/tokenizers`, see its SOURCES.md) and its
real generation_config.json. Mistral and Phi-3 have no tokenizer there: they get tunesmith's small
BPE tokenizer with the family's special tokens and template. Built per test session; no weights
are committed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TOKENIZERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tokenizers"
SHARED = {"llama3_1", "qwen3", "gemma3"}

LLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
FAMILIES = {  # model config, the family's real generation_config.json, expected document tokens
    "llama3_1": dict(
        arch="LlamaForCausalLM",
        config=dict(vocab_size=128256, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                    max_position_embeddings=131072, rope_parameters=LLAMA_ROPE, tie_word_embeddings=False),
        generation={"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
                    "temperature": 0.6, "top_p": 0.9},
        bos=("<|begin_of_text|>", 128000), end=("<|end_of_text|>", 128001), turn_end="<|eot_id|>"),
    "qwen3": dict(
        arch="Qwen3ForCausalLM",
        config=dict(vocab_size=151936, bos_token_id=151643, eos_token_id=151645, head_dim=16,
                    max_position_embeddings=40960, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                    tie_word_embeddings=True),
        generation={"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
                    "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95},
        bos=(None, None), end=("<|endoftext|>", 151643), turn_end="<|im_end|>"),
    "gemma3": dict(
        arch="Gemma3ForCausalLM",
        config=dict(vocab_size=262144, bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0, head_dim=16,
                    query_pre_attn_scalar=16, sliding_window=64, max_position_embeddings=32768,
                    tie_word_embeddings=True),
        generation={"bos_token_id": 2, "do_sample": True, "eos_token_id": [1, 106], "pad_token_id": 0,
                    "top_k": 64, "top_p": 0.95},
        bos=("<bos>", 2), end=("<eos>", 1), turn_end="<end_of_turn>"),
    # no tokenizer of these two in the shared folder: tunesmith's small BPE tokenizer with the family's
    # special tokens and chat template (the architecture is what is tested)
    "mistral": dict(
        arch="MistralForCausalLM", config=dict(max_position_embeddings=4096, sliding_window=None),
        generation={"bos_token_id": 1, "eos_token_id": 2}, turn_end="</s>"),
    "phi3": dict(
        arch="Phi3ForCausalLM", config=dict(max_position_embeddings=4096, pad_token_id=None),
        generation={"bos_token_id": 1, "eos_token_id": [32000, 32007]}, turn_end="<|end|>"),
}
DOCS = [f"Document {i}: the {w} river runs past {i * 7} old mills." for i, w in
        enumerate(["quiet", "long", "cold", "green", "slow", "wide"] * 4)]


MISTRAL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} "
                    "[/INST]{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
PHI3_TEMPLATE = ("{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def tokenizer_dir(family: str) -> Path:
    """The family's shared tokenizer folder (the test skips where ../shared is absent)."""
    if not (TOKENIZERS / family / "tokenizer.json").is_file():
        pytest.skip(f"{TOKENIZERS / family} is not present on this machine")
    return TOKENIZERS / family


def build(family: str, folder: Path) -> Path:
    """`folder` as a user's checkpoint of `family`: tiny weights, the tokenizer, the generation_config."""
    import torch
    import transformers

    spec = FAMILIES[family]
    folder.mkdir(parents=True, exist_ok=True)
    ids = {}
    if family in SHARED:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tokenizer_dir(family) / name, folder / name)
    else:
        tok = _bpe_tokenizer(family)
        tok.save_pretrained(folder)
        ids = {"vocab_size": len(tok), "bos_token_id": tok.bos_token_id,
               "eos_token_id": tok.convert_tokens_to_ids(spec["turn_end"])}
    config_cls = getattr(transformers, spec["arch"].replace("ForCausalLM", "Config").replace("Gemma3Config", "Gemma3TextConfig"))
    config = config_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=1, **{**spec["config"], **ids})
    torch.manual_seed(0)
    getattr(transformers, spec["arch"])(config).save_pretrained(folder)
    generation = dict(spec["generation"])
    if ids:  # the BPE tokenizer's own ids
        generation.update(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"])
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return folder


def _bpe_tokenizer(family: str):
    from tunesmith.pretraining.corpus import __file__ as corpus_init
    from tunesmith.pretraining.tokenizer import train_tokenizer

    text = (Path(corpus_init).parent / "tinytales.txt").read_text(encoding="utf-8")
    tok = train_tokenizer(text.split("\n\n")[:300], vocab_size=400)
    if family == "mistral":
        tok.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
        tok.chat_template = MISTRAL_TEMPLATE
    else:
        tok.add_special_tokens({"bos_token": "<s>", "eos_token": "<|endoftext|>",
                                "additional_special_tokens": ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]})
        tok.chat_template = PHI3_TEMPLATE
    return tok
