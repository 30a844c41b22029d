"""Weight-initialization schemes for fresh models.

- `normal`: the Hugging Face default, N(0, std) for every Linear/Embedding, zero biases.
- `gpt2_scaled`: as `normal`, then residual output projections get std / sqrt(2 * layers)
  (GPT-2, Radford et al. 2019), so the residual stream's variance does not grow with depth.
- `small_init`: GPT-NeoX's scheme: N(0, sqrt(2 / (5 d))) everywhere ("Transformers without
  Tears", Nguyen & Salazar 2019) and 2 / (layers * sqrt(d)) on output projections ("wang_init").
Norm layers are reset to weight 1, bias 0 in every scheme.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel

from .presets import OUTPUT_PROJECTIONS

SCHEMES = ("normal", "gpt2_scaled", "small_init")


def _is_output_projection(name: str, family: str) -> bool:
    return any(name.endswith(suffix) for suffix in OUTPUT_PROJECTIONS[family])


def _weight_modules(model: nn.Module):
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() == 2:
            yield name, module


def target_stds(model: PreTrainedModel, family: str, scheme: str, std: float = 0.02) -> dict[str, float]:
    """The std each 2-D weight (by module name) should have under `scheme`: what `initialize`
    sets and what the tests check."""
    cfg = model.config
    layers, d = cfg.num_hidden_layers, cfg.hidden_size
    if scheme == "normal":
        base, out = std, std
    elif scheme == "gpt2_scaled":
        base, out = std, std / math.sqrt(2 * layers)
    elif scheme == "small_init":
        base, out = math.sqrt(2 / (5 * d)), 2 / (layers * math.sqrt(d))
    else:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {SCHEMES}")
    return {name: (out if _is_output_projection(name, family) else base)
            for name, _ in _weight_modules(model)}


@torch.no_grad()
def initialize(model: PreTrainedModel, family: str, scheme: str, std: float = 0.02, seed: int = 0) -> None:
    """Re-initialize `model` in place under `scheme` (deterministic for a seed)."""
    stds = target_stds(model, family, scheme, std)
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for name, module in model.named_modules():
        if name in stds and id(module.weight) not in seen:  # tied weights initialized once
            seen.add(id(module.weight))
            w = module.weight
            w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float32).mul_(stds[name]).to(w.dtype))
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                w[module.padding_idx].zero_()
        bias = getattr(module, "bias", None)
        if isinstance(bias, nn.Parameter) and "norm" not in type(module).__name__.lower() \
                and not isinstance(module, nn.LayerNorm):
            bias.zero_()
        if isinstance(module, nn.LayerNorm) or "RMSNorm" in type(module).__name__:
            if getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
