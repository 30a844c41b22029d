"""Memory planner: the peak memory of a training run before it starts, and what fits a budget.

The model is built on the meta device from its config (no weights are read), so parameter
counts are exact for any architecture. The peak is the sum of

- runtime: the process itself (Python, torch, transformers, peft, bitsandbytes) on CPU;
- weights: fp32/bf16 parameters, or bitsandbytes 4-bit (NF4/FP4, with or without double
  quantization) / 8-bit for the linear layers of the blocks;
- trainable state: the adapter (or every weight, for `full`), its gradients and the
  optimizer state (8 bytes per parameter for AdamW, 2 for 8-bit AdamW);
- activations kept for the backward pass: per token and layer a term in the hidden size,
  one in the MLP width and one in heads x sequence length (attention scores), plus the
  logits; with gradient checkpointing only each layer's input plus one layer's worth
  (recomputed). The optimizer step's temporaries replace the activations at the end of a
  step, so the larger of the two counts.

The activation coefficients were fitted once to eight measured runs of llama `small`
(12.6M parameters, CPU, fp32, SDPA with a materialized mask, batch 4 x 512) and checked
on llama `base` (100M) by `benchmarks/adapters_memory.py`; see
benchmarks/results/adapters.md. Other architectures and GPUs use the same coefficients
and are not yet checked against measurements.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, PretrainedConfig

from ..core.config import coerce
from ..core.errors import UserError
from .config import AdapterConfig
from .optim import STATE_BYTES
from .targets import default_target_names, find_linear_targets, select

GiB = 2**30
RUNTIME_BYTES = {"cpu": int(0.45 * GiB), "cuda": int(0.5 * GiB)}  # process / CUDA context
QUANT_BYTES = {"none": 4.0, "nf4": 0.5 + 4 / 64, "fp4": 0.5 + 4 / 64, "int8": 1.0 + 0.0}
DOUBLE_QUANT_NF4 = 0.5 + 1 / 64 + 4 / (64 * 256)
# activation bytes kept per token and layer = 4 * (A_HIDDEN*h + A_MLP*I + A_SCORES*heads*seq)
A_HIDDEN, A_MLP, A_SCORES = 5.5, 2.0, 2.75
LOGIT_COPIES = 2.0     # float logits' log-softmax and its gradient at the start of backward
RECOMPUTE_FACTOR = 2.0  # checkpointing: one layer recomputed, plus its activation gradients
# bytes per element of each adapted layer's input, per token, kept by the adapter branch
TARGET_INPUT_BYTES = {"adapter": 6.1, "dropout": 6.6, "nf4": 2.9, "fp4": 2.9, "int8": 6.8,
                      "none": 0.0}

@dataclass
class MemoryPlan:
    """Predicted peak memory of one training setting, in bytes, by component."""

    settings: dict
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def fits(self, budget: int) -> bool:
        return self.total <= budget

    def table(self) -> str:
        """Aligned text: one line per component and the total, in GiB."""
        rows = [f"  {k:<12s} {v / GiB:8.2f} GiB" for k, v in self.parts.items()]
        return "\n".join(rows + [f"  {'total':<12s} {self.total / GiB:8.2f} GiB"])


def parse_size(text: str | int) -> int:
    """"16GB", "16G", "512MiB", "1.5T" or a byte count -> bytes (GB taken as GiB)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise UserError(f'cannot read memory size "{text}"', field="memory", fix="write e.g. 16GB")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


def _config_of(model: str | os.PathLike | PretrainedConfig | nn.Module) -> PretrainedConfig:
    if isinstance(model, PretrainedConfig):
        return model
    if isinstance(model, nn.Module):
        return model.config
    path = Path(model)
    if not (path / "config.json").is_file():
        raise UserError("no config.json in the model folder", file=path,
                        fix="pass a folder written by save_pretrained")
    return AutoConfig.from_pretrained(path)


def _meta_model(config: PretrainedConfig, task: str, num_labels: int) -> nn.Module:
    with torch.device("meta"):
        if task == "seq_cls":
            config = config.__class__.from_dict({**config.to_dict(), "num_labels": num_labels})
            return AutoModelForSequenceClassification.from_config(config)
        return AutoModelForCausalLM.from_config(config)


def _adapter_params(model: nn.Module, cfg: AdapterConfig) -> int:
    """Trainable parameters the adapter adds (the task head is counted separately)."""
    head = ("classifier", "score", "pooler") if cfg.task == "seq_cls" else ()
    if cfg.method in ("prompt_tuning", "prefix_tuning"):
        hidden = model.config.hidden_size
        per_token = hidden * (2 * model.config.num_hidden_layers if cfg.method == "prefix_tuning" else 1)
        return cfg.num_virtual_tokens * per_token
    targets = cfg.target_modules or default_target_names(model, exclude=head)
    chosen = select(model, targets, cfg.layers)
    if cfg.method == "ia3":
        return sum(t.in_features if t.is_feedforward_out else t.out_features for t in chosen)
    if cfg.method == "vera":
        return sum(t.out_features + cfg.rank for t in chosen)
    extra = sum(t.out_features for t in chosen) if cfg.method == "dora" else 0
    return sum(cfg.rank * (t.in_features + t.out_features) for t in chosen) + extra


def plan(model: str | os.PathLike | PretrainedConfig | nn.Module,
         adapter: AdapterConfig | dict | None = None, *, batch_size: int = 1, seq_len: int = 512,
         device: str = "cpu", num_labels: int = 2) -> MemoryPlan:
    """Predict the peak memory of training `model` with `adapter` at this batch shape.

    >>> p = plan("runs/base/model", AdapterConfig(method="qlora"), batch_size=4, seq_len=1024)
    >>> print(p.table()); p.fits(parse_size("16GB"))
    """
    cfg = coerce(AdapterConfig, adapter)
    if device not in RUNTIME_BYTES:
        raise UserError(f'unknown device "{device}"', field="device", fix="use cpu or cuda")
    meta = _meta_model(_config_of(model), cfg.task, num_labels)
    c = meta.config
    params = {id(p): p for p in meta.parameters()}.values()
    total = sum(p.numel() for p in params)
    block_linear = sum(t.in_features * t.out_features for t in find_linear_targets(meta))
    quant = cfg.resolved_quantize()
    per_param = DOUBLE_QUANT_NF4 if quant in ("nf4", "fp4") and cfg.double_quant else QUANT_BYTES[quant]
    weights = (total - block_linear) * 4 + block_linear * per_param
    head = sum(p.numel() for n, p in meta.named_parameters()
               if cfg.task == "seq_cls" and any(h in n.split(".") for h in ("classifier", "score", "pooler")))
    trainable = total if cfg.method == "full" else _adapter_params(meta, cfg) + head
    state_bytes = STATE_BYTES[cfg.optimizer]

    tokens = batch_size * (seq_len + (cfg.num_virtual_tokens if cfg.method in ("prompt_tuning",) else 0))
    hidden, layers = c.hidden_size, c.num_hidden_layers
    inter = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * hidden
    heads = c.num_attention_heads
    per_layer = 4 * (A_HIDDEN * hidden + A_MLP * inter + A_SCORES * heads * seq_len)
    if cfg.method not in ("full", "prompt_tuning", "prefix_tuning"):
        head = ("classifier", "score", "pooler") if cfg.task == "seq_cls" else ()
        targets = cfg.target_modules or default_target_names(meta, exclude=head)
        chosen = select(meta, targets, cfg.layers)
        per_byte = TARGET_INPUT_BYTES["adapter"] + TARGET_INPUT_BYTES[quant] + (
            TARGET_INPUT_BYTES["dropout"] if cfg.dropout > 0 and cfg.method != "ia3" else 0.0)
        per_layer += per_byte * sum(t.in_features for t in chosen) / max(layers, 1)
    if cfg.gradient_checkpointing:
        layer_bytes = tokens * (4 * hidden * layers + RECOMPUTE_FACTOR * per_layer)
    else:
        layer_bytes = tokens * per_layer * layers
    # torch's foreach AdamW step holds one temporary per trainable parameter (after backward)
    step_bytes = trainable * 4 if cfg.optimizer == "adamw" else 0
    out_width = num_labels if cfg.task == "seq_cls" else c.vocab_size
    logits = (batch_size if cfg.task == "seq_cls" else tokens) * out_width * 4 * LOGIT_COPIES
    parts = {"runtime": RUNTIME_BYTES[device], "weights": int(weights),
             "adapter": int(trainable * 4) if cfg.method != "full" else 0,
             "gradients": int(trainable * 4), "optimizer": int(trainable * state_bytes),
             "activations": int(max(layer_bytes + logits, step_bytes))}
    settings = {"method": cfg.method, "quantize": quant, "rank": cfg.rank,
                "gradient_checkpointing": cfg.gradient_checkpointing,
                "optimizer": cfg.optimizer, "batch_size": batch_size, "seq_len": seq_len,
                "trainable_params": int(trainable), "total_params": int(total)}
    return MemoryPlan(settings, parts)


def fitting(model: str | os.PathLike | PretrainedConfig | nn.Module, budget: int | str, *,
            batch_size: int = 1, seq_len: int = 512, device: str = "cpu",
            task: str = "causal_lm") -> list[MemoryPlan]:
    """Plans for the usual settings (full / LoRA / QLoRA, +- checkpointing, +- 8-bit AdamW),
    the ones under `budget` first, each group from cheapest to dearest. Example:

    >>> [p.settings["method"] for p in fitting("runs/base/model", "2GB") if p.fits(2 * GiB)]
    """
    budget = parse_size(budget)
    candidates = []
    for method, quant in (("full", "none"), ("lora", "none"), ("lora", "int8"), ("qlora", "nf4")):
        for ckpt in (False, True):
            for optimizer in ("adamw", "adamw_8bit"):
                cfg = AdapterConfig(method=method, quantize=quant if method != "full" else "auto",
                                    gradient_checkpointing=ckpt, optimizer=optimizer, task=task)
                candidates.append(plan(model, cfg, batch_size=batch_size, seq_len=seq_len,
                                       device=device))
    return sorted(candidates, key=lambda p: (not p.fits(budget), p.total))
