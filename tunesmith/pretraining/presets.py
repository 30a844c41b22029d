"""Architecture presets: decoder-only models built from stock transformers classes.

Families: `llama` (RMSNorm, SwiGLU, RoPE, grouped-query attention), `gpt2` (learned
positions, LayerNorm, GELU MLP) and `neox` (GPT-NeoX: parallel residual, partial RoPE).
Sizes run from `nano` (~0.3M parameters, for tests) to `1b`; any dimension can be
overridden.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM,
                          LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel)

from ..core.errors import UserError

FAMILIES = ("llama", "gpt2", "neox")


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    context: int


SIZES: dict[str, Shape] = {
    "nano": Shape(layers=2, hidden=64, heads=4, kv_heads=2, intermediate=192, vocab=2048, context=256),
    "small": Shape(layers=6, hidden=384, heads=6, kv_heads=2, intermediate=1024, vocab=8192, context=512),
    "base": Shape(layers=12, hidden=768, heads=12, kv_heads=4, intermediate=2048, vocab=32000, context=1024),
    "1b": Shape(layers=16, hidden=2048, heads=32, kv_heads=8, intermediate=8192, vocab=32000, context=2048),
}


def resolve_shape(size: str, **overrides: int | None) -> Shape:
    if size not in SIZES:
        raise UserError(f'unknown model size "{size}"', field="model.size",
                        fix=f"choose one of {', '.join(SIZES)}")
    shape = replace(SIZES[size], **{k: v for k, v in overrides.items() if v is not None})
    if shape.hidden % shape.heads:
        raise UserError(f"hidden size {shape.hidden} is not divisible by heads {shape.heads}",
                        field="model.heads")
    if shape.heads % shape.kv_heads:
        raise UserError(f"heads {shape.heads} is not divisible by kv_heads {shape.kv_heads}",
                        field="model.kv_heads")
    for name in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "context"):
        if getattr(shape, name) <= 0:
            raise UserError(f"must be positive, got {getattr(shape, name)}", field=f"model.{name}")
    return shape


def make_config(family: str, shape: Shape, *, bos_token_id: int = 1, eos_token_id: int = 2,
                pad_token_id: int | None = 0, tie_embeddings: bool = True,
                initializer_range: float = 0.02) -> PretrainedConfig:
    """A transformers config for `family` at `shape`."""
    common = dict(vocab_size=shape.vocab, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                  pad_token_id=pad_token_id, tie_word_embeddings=tie_embeddings,
                  initializer_range=initializer_range)
    if family == "llama":
        return LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                           num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                           num_key_value_heads=shape.kv_heads, max_position_embeddings=shape.context,
                           rms_norm_eps=1e-5, **common)
    if family == "gpt2":
        return GPT2Config(n_embd=shape.hidden, n_layer=shape.layers, n_head=shape.heads,
                          n_inner=shape.intermediate, n_positions=shape.context,
                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    if family == "neox":
        return GPTNeoXConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                             num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                             max_position_embeddings=shape.context, rotary_pct=0.25,
                             use_parallel_residual=True, **common)
    raise UserError(f'unknown model family "{family}"', field="model.family",
                    fix=f"choose one of {', '.join(FAMILIES)}")


MODEL_CLASSES = {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel, "neox": GPTNeoXForCausalLM}


def build_model(family: str = "llama", size: str = "nano", **overrides) -> PreTrainedModel:
    """A freshly initialized causal LM, e.g. `build_model("gpt2", "nano", vocab=512)`.
    Extra keyword arguments of `make_config` (token ids, tie_embeddings) pass through."""
    shape_keys = {k: overrides.pop(k) for k in list(overrides) if k in Shape.__dataclass_fields__}
    shape = resolve_shape(size, **shape_keys)
    config = make_config(family, shape, **overrides)
    return MODEL_CLASSES[family](config)


def count_parameters(model) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# the names of the residual-output projections, per family: scaled-init schemes shrink these
OUTPUT_PROJECTIONS = {
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
    "neox": ("attention.dense", "mlp.dense_4h_to_h"),
}
