"""Merging an adapter into its base: one full model folder loadable with `AutoModel*`.

A QLoRA adapter was trained against the *quantized* weights, so its base is loaded
quantized exactly as in training, dequantized, and only then merged: the merged model
reproduces the adapter model's outputs instead of adding a delta to weights it never saw.
The result is saved in the base's own dtype, as safetensors.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import AutoConfig

from ..core.errors import UserError
from ..core.rundir import atomic_dir
from ..core.modelio import load_peft
from .artifacts import copy_tokenizer_files, read_record, resolve_base
from .config import PROMPT_METHODS, AdapterConfig
from .quantize import DTYPES, bnb_config, load_base


def _base_dtype(base: Path) -> torch.dtype:
    config = AutoConfig.from_pretrained(base)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        return DTYPES.get(dtype, torch.float32)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def merge(adapter_dir: str | os.PathLike, output: str | os.PathLike, *,
          base: str | os.PathLike | None = None, dtype: str = "base") -> Path:
    """Write base + adapter as one model folder at `output` (atomically) and return it.

    `dtype` is "base" (the base folder's dtype) or float32/bfloat16/float16. Example:

    merge("runs/sft/adapter", "runs/sft/merged")
    AutoModelForCausalLM.from_pretrained("runs/sft/merged")
    """
    adapter_dir = Path(adapter_dir)
    record = read_record(adapter_dir)
    cfg = AdapterConfig.model_validate(record["adapter"])
    if cfg.method in PROMPT_METHODS:
        raise UserError(f"a {cfg.method} adapter adds virtual tokens and cannot be merged into "
                        "weights", file=adapter_dir,
                        fix="load it with PeftModel.from_pretrained(base, folder) instead; as a stage's model, "
                            "set model.adapter: continue to train it further")
    base_path = resolve_base(adapter_dir, record, base)
    target_dtype = _base_dtype(base_path) if dtype == "base" else DTYPES[dtype]
    model = load_base(base_path, cfg, num_labels=record.get("num_labels"))
    if bnb_config(cfg) is not None:
        model = model.dequantize(dtype=target_dtype)
    model = load_peft(model, adapter_dir).merge_and_unload()
    model = model.to(target_dtype)
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        copy_tokenizer_files(adapter_dir, tmp)
        copy_tokenizer_files(base_path, tmp)
    return Path(output)


@contextmanager
def merged_for_inference(model: nn.Module) -> Iterator[nn.Module]:
    """Fold every unmerged LoRA/DoRA delta into its float base weight for the duration of the
    block, so inference costs what the bare model costs (no extra low-rank matmuls per layer);
    unfolded on exit, to within fp32 rounding. Quantized (4/8-bit) and bf16/fp16 bases are left
    unmerged: folding would re-quantize them, and in 16 bits W + BA - BA does not give W back.
    Scoring MiniLM with LoRA r=8: 1.15x faster.

    with merged_for_inference(model), torch.inference_mode():  # merge first, then inference mode
        logits = model(**batch).logits
    """
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and not m.merged
              and getattr(m.get_base_layer(), "weight", None) is not None
              and m.get_base_layer().weight.dtype in (torch.float32, torch.float64)]
    with torch.no_grad():  # outside any inference_mode block: the weights stay normal trainable tensors
        for layer in layers:
            layer.merge()
    try:
        yield model
    finally:
        with torch.no_grad():
            for layer in layers:
                layer.unmerge()
