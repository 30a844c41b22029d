"""Memory planner: the peak memory of a training run before it starts, and what fits a budget.

The model is built on the meta device from its config (no weights are read), so parameter
counts are exact for any architecture. The peak is what is always resident plus the larger
of two phases:

- runtime: the process itself (Python, torch, transformers, peft, bitsandbytes imported and
  one training step's thread pools and scratch) on CPU, or the CUDA context;
- weights: fp32 parameters, or for the linear layers of the blocks bitsandbytes 4-bit
  (NF4/FP4: half a byte plus one absmax per 64 weights, fp32, or with double quantization
  uint8 plus one fp32 per 256 blocks) / 8-bit (one byte plus one fp32 scale per output row);
  embeddings, norms and the output head stay in full precision;
- adapter and optimizer: the adapter weights (for `full`, the weights themselves), and the
  AdamW state: 8 bytes per trainable parameter, or for bitsandbytes 8-bit AdamW 2 bytes plus
  two fp32 absmax per 256 (tensors under 4096 elements keep 32-bit state);
- forward/backward phase: the tensors autograd keeps for backward, per token and layer
  `4 * (c_h * hidden + 2 * kv_width + c_i * mlp_width)` bytes, plus the adapter's dropout
  copies of its inputs (and on an 8-bit base the input bitsandbytes keeps), plus the
  logits twice (tunesmith's lean loss keeps the logits and writes their gradient; see
  loss.py). With gradient checkpointing only each layer's input is kept, and one layer is
  recomputed (with its gradients) at a time;
- step phase: every gradient, plus the optimizer's temporaries for its largest tensor
  (torch AdamW on CPU: 2 fp32 copies; bitsandbytes 8-bit AdamW on CPU dequantizes both
  states and copies the gradient: 4 fp32 copies plus the requantized output).

The per-token coefficients are counts, not fits: they are the bytes autograd saves in a
llama block (`benchmarks/adapters_memory.py --count` reads them with saved-tensor hooks).
The runtime is measured. `benchmarks/adapters_memory.py` checks the totals against the peak
RSS of one fresh process per configuration; see benchmarks/results/adapters.md. Other
architectures use the llama coefficients (a non-gated MLP keeps 2 instead of 4 tensors of
its width) and are not checked against measurements; GPUs are not checked either.
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
from .targets import default_target_names, find_linear_targets, select

GiB = 2**30
# CPU: RSS after importing torch, transformers, peft, bitsandbytes and tunesmith (0.51 GiB)
# plus what the first training step adds (allocator arenas, oneDNN/OpenMP scratch)
RUNTIME_BYTES = {"cpu": int(0.70 * GiB), "cuda": int(0.5 * GiB)}
# bytes per weight of the quantized block linears, scales included (bitsandbytes blocksize 64)
QUANT_BYTES = {"none": 4.0, "nf4": 0.5 + 4 / 64, "fp4": 0.5 + 4 / 64, "int8": 1.0}
DOUBLE_QUANT_4BIT = 0.5 + 1 / 64 + 4 / (64 * 256)
INT8_SCALE_BYTES = 4  # one fp32 scale per output row
# optimizer state bytes per trainable parameter, and fp32 copies of the largest tensor the
# CPU step holds at once
STATE_BYTES = {"adamw": 8.0, "adamw_8bit": 2.0 + 8 / 256, "paged_adamw_8bit": 2.0 + 8 / 256,
               "paged_adamw_32bit": 8.0}
STEP_COPIES = {"adamw": 2.0, "adamw_8bit": 4.25, "paged_adamw_8bit": 4.25, "paged_adamw_32bit": 2.0}
BNB_MIN_8BIT_SIZE = 4096
# floats autograd keeps per token and layer, in units of the hidden width (c_h), by whether
# the block linears train (full) or are frozen (adapters); c_i: per MLP width, gated or not
C_HIDDEN = {"full": 8.0, "frozen": 6.0}
C_MLP = {"gated": 4.0, "plain": 2.0}
C_OUTSIDE = {"full": 3.3, "frozen": 1.0}  # final norm and head input, per token, x hidden
DROPOUT_BYTES = 5.73  # per element of each adapted layer's input: dropout output and mask
# bitsandbytes' 8-bit matmul for training on CPU (MatMul8bitFp) keeps its input on ctx even
# when the weight is frozen: 4 bytes per element of each adapted layer's input (an upper
# bound: q/k/v share one input), invisible to saved-tensor hooks
INT8_INPUT_BYTES = 4.0
LOGIT_COPIES = 2.0  # the logits and their gradient at the start of backward
SCORE_COPIES = 2.0  # eager attention: probabilities and their dropout, per head and key

@dataclass
class MemoryPlan:
    """Predicted peak memory of one training setting, in bytes: the always-resident `parts`
    plus the larger of the two `phases` (forward/backward, optimizer step)."""

    settings: dict
    parts: dict[str, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values()) + max(self.phases.values(), default=0)

    def fits(self, budget: int) -> bool:
        return self.total <= budget

    def table(self) -> str:
        """Aligned text: one line per component and the total, in GiB."""
        rows = [f"  {k:<12s} {v / GiB:8.2f} GiB" for k, v in self.parts.items()]
        peak = max(self.phases, key=self.phases.get) if self.phases else None
        rows += [f"  {k:<12s} {v / GiB:8.2f} GiB{'  (the larger phase)' if k == peak else ''}"
                 for k, v in self.phases.items()]
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


def _adapter_params(model: nn.Module, cfg: AdapterConfig, chosen: list) -> list[int]:
    """Sizes of the trainable tensors the adapter adds (the task head is counted separately)."""
    if cfg.method in ("prompt_tuning", "prefix_tuning"):
        hidden = model.config.hidden_size
        per_token = hidden * (2 * model.config.num_hidden_layers if cfg.method == "prefix_tuning" else 1)
        return [cfg.num_virtual_tokens * per_token]
    if cfg.method == "ia3":
        return [t.in_features if t.is_feedforward_out else t.out_features for t in chosen]
    if cfg.method == "vera":
        return [t.out_features + cfg.rank for t in chosen]
    sizes = [n for t in chosen for n in (cfg.rank * t.in_features, cfg.rank * t.out_features)]
    return sizes + ([t.out_features for t in chosen] if cfg.method == "dora" else [])


def _weight_bytes(meta: nn.Module, quant: str, double_quant: bool) -> float:
    params = {id(p): p for p in meta.parameters()}.values()
    total = sum(p.numel() for p in params)
    linears = find_linear_targets(meta)
    block = sum(t.in_features * t.out_features for t in linears)
    if quant == "none":
        return 4.0 * total
    per_weight = DOUBLE_QUANT_4BIT if quant in ("nf4", "fp4") and double_quant else QUANT_BYTES[quant]
    scales = INT8_SCALE_BYTES * sum(t.out_features for t in linears) if quant == "int8" else 0
    return 4.0 * (total - block) + per_weight * block + scales


def _saved_per_token(meta: nn.Module, cfg: AdapterConfig, chosen: list, seq_len: int) -> tuple[float, float]:
    """Bytes autograd keeps per token: (one transformer layer, outside the layers)."""
    c = meta.config
    hidden, layers, heads = c.hidden_size, c.num_hidden_layers, c.num_attention_heads
    inter = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * hidden
    head_dim = getattr(c, "head_dim", None) or hidden // heads
    kv_width = (getattr(c, "num_key_value_heads", None) or heads) * head_dim
    gated = any(t.suffix.endswith(("gate_proj", "w1", "w3")) for t in find_linear_targets(meta))
    kind = "full" if cfg.method == "full" else "frozen"
    per_layer = 4 * (C_HIDDEN[kind] * hidden + 2 * kv_width + C_MLP["gated" if gated else "plain"] * inter)
    if getattr(c, "_attn_implementation", "sdpa") == "eager":
        per_layer += 4 * SCORE_COPIES * heads * seq_len
    inputs = sum(t.in_features for t in chosen) / max(layers, 1)
    if cfg.method not in ("full", "prompt_tuning", "prefix_tuning") and cfg.dropout > 0 and cfg.method != "ia3":
        per_layer += DROPOUT_BYTES * inputs
    if cfg.resolved_quantize() == "int8":
        per_layer += INT8_INPUT_BYTES * inputs
    return per_layer, 4 * C_OUTSIDE[kind] * hidden


def plan(model: str | os.PathLike | PretrainedConfig | nn.Module,
         adapter: AdapterConfig | dict | None = None, *, batch_size: int = 1, seq_len: int = 512,
         device: str = "cpu", num_labels: int = 2, gradient_checkpointing: bool | str = False) -> MemoryPlan:
    """Predict the peak memory of training `model` with `adapter` at this batch shape.
    `gradient_checkpointing: "auto"` plans what the stage decides (`core.device.should_checkpoint`
    on the planned activations; `settings["checkpointed"]` says which).

    p = plan("runs/base/model", AdapterConfig(method="qlora"), batch_size=4, seq_len=1024)
    print(p.table()); p.fits(parse_size("16GB"))
    """
    if gradient_checkpointing == "auto":
        from ..core.device import should_checkpoint

        kept = plan(model, adapter, batch_size=batch_size, seq_len=seq_len, device=device, num_labels=num_labels)
        state = sum(v for k, v in kept.parts.items() if k != "runtime") + kept.phases["step"]
        on = should_checkpoint(kept.phases["activations"], state)
        chosen = plan(model, adapter, batch_size=batch_size, seq_len=seq_len, device=device, num_labels=num_labels,
                      gradient_checkpointing=on) if on else kept
        return MemoryPlan({**chosen.settings, "gradient_checkpointing": "auto", "checkpointed": on},
                          chosen.parts, chosen.phases)
    cfg = coerce(AdapterConfig, adapter)
    if device not in RUNTIME_BYTES:
        raise UserError(f'unknown device "{device}"', field="device", fix="use cpu or cuda")
    meta = _meta_model(_config_of(model), cfg.task, num_labels)
    c = meta.config
    params = list({id(p): p for p in meta.parameters()}.values())
    total = sum(p.numel() for p in params)
    quant = cfg.resolved_quantize()
    head_names = ("classifier", "score", "pooler") if cfg.task == "seq_cls" else ()
    chosen = []
    if cfg.method not in ("full", "prompt_tuning", "prefix_tuning"):
        chosen = select(meta, cfg.target_modules or default_target_names(meta, exclude=head_names), cfg.layers)
    if cfg.method == "full":
        sizes = [p.numel() for p in params]
    else:
        sizes = _adapter_params(meta, cfg, chosen) + [
            p.numel() for n, p in meta.named_parameters() if any(h in n.split(".") for h in head_names)]
    trainable = sum(sizes)
    state = sum(n * (STATE_BYTES[cfg.optimizer] if n >= BNB_MIN_8BIT_SIZE else STATE_BYTES["adamw"])
                for n in sizes)

    tokens = batch_size * (seq_len + (cfg.num_virtual_tokens if cfg.method == "prompt_tuning" else 0))
    per_layer, outside = _saved_per_token(meta, cfg, chosen, seq_len)
    layers = c.num_hidden_layers
    out_width = num_labels if cfg.task == "seq_cls" else c.vocab_size
    logits = LOGIT_COPIES * 4 * out_width * (batch_size if cfg.task == "seq_cls" else tokens)
    if gradient_checkpointing:
        kept = tokens * (4 * c.hidden_size * layers + outside)
        backward = kept + max(logits, 2 * tokens * per_layer)  # one layer recomputed + its grads
    else:
        backward = tokens * (per_layer * layers + outside) + logits
    step = 4 * trainable + STEP_COPIES[cfg.optimizer] * 4 * max(sizes, default=0)
    parts = {"runtime": RUNTIME_BYTES[device], "weights": int(_weight_bytes(meta, quant, cfg.double_quant)),
             "adapter": 4 * trainable if cfg.method != "full" else 0, "optimizer": int(state)}
    phases = {"activations": int(backward), "step": int(step)}
    settings = {"method": cfg.method, "quantize": quant, "rank": cfg.rank,
                "gradient_checkpointing": gradient_checkpointing,
                "optimizer": cfg.optimizer, "batch_size": batch_size, "seq_len": seq_len,
                "trainable_params": int(trainable), "total_params": int(total)}
    return MemoryPlan(settings, parts, phases)


def fitting(model: str | os.PathLike | PretrainedConfig | nn.Module, budget: int | str, *,
            batch_size: int = 1, seq_len: int = 512, device: str = "cpu",
            task: str = "causal_lm") -> list[MemoryPlan]:
    """Plans for the usual settings (full / LoRA / QLoRA, +- checkpointing, +- 8-bit AdamW),
    the ones under `budget` first, each group from cheapest to dearest. Example:

    [p.settings["method"] for p in fitting("runs/base/model", "2GB") if p.fits(2 * GiB)]
    """
    budget = parse_size(budget)
    candidates = []
    for method, quant in (("full", "none"), ("lora", "none"), ("lora", "int8"), ("qlora", "nf4")):
        for ckpt in (False, True):
            for optimizer in ("adamw", "adamw_8bit"):
                cfg = AdapterConfig(method=method, quantize=quant if method != "full" else "auto",
                                    optimizer=optimizer, task=task)
                candidates.append(plan(model, cfg, batch_size=batch_size, seq_len=seq_len,
                                       device=device, gradient_checkpointing=ckpt))
    return sorted(candidates, key=lambda p: (not p.fits(budget), p.total))
