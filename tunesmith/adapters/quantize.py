"""Loading a base model as the adapter block says: full precision, 4-bit (NF4/FP4) or 8-bit.

The bitsandbytes backend lives here, out of the adapter logic. bitsandbytes >= 0.45 runs
4-bit and 8-bit layers on CPU as well as CUDA, so QLoRA works (slowly) without a GPU.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          BitsAndBytesConfig, PreTrainedModel)

from ..compat import set_bnb_cpu_packing
from ..core.errors import UserError
from ..core.modelio import check_model_folder, load_model
from .config import AdapterConfig
from .targets import HEAD_NAMES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_dtype(cfg: AdapterConfig) -> torch.dtype:
    """`auto` is bfloat16 on a GPU that supports it and float32 elsewhere (CPU bf16 is slow)."""
    if cfg.compute_dtype != "auto":
        return DTYPES[cfg.compute_dtype]
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def bnb_config(cfg: AdapterConfig) -> BitsAndBytesConfig | None:
    """The transformers quantization config for `cfg`, or None for a full-precision base."""
    quant = cfg.resolved_quantize()
    if quant == "none":
        return None
    skip = list(HEAD_NAMES) + (["pooler"] if cfg.task == "seq_cls" else [])
    if quant == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant,
                              bnb_4bit_use_double_quant=cfg.double_quant,
                              bnb_4bit_compute_dtype=compute_dtype(cfg),
                              bnb_4bit_quant_storage=torch.uint8, llm_int8_skip_modules=skip)


def is_quantized(model: nn.Module) -> bool:
    """True when `model` (or the base under a PeftModel) holds bitsandbytes weights."""
    base = getattr(model, "get_base_model", lambda: model)()
    return bool(getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False))


def load_base(path: str | os.PathLike, adapter: AdapterConfig | None = None, *,
              num_labels: int | None = None, dtype: str | torch.dtype = "auto",
              trust_remote_code: bool = False, allow_pickle: bool = False) -> PreTrainedModel:
    """Load the base model at `path` for `adapter` (quantized when it says so), with a
    causal-LM head or, for `task: seq_cls`, a classification head of `num_labels` outputs
    (1 means regression), through the one safe loader (`core.modelio.load_model`). Example:

    model = load_base("runs/nano/model", AdapterConfig(method="qlora"))  # 4-bit NF4
    """
    cfg = adapter or AdapterConfig()
    path = check_model_folder(path, allow_pickle)
    quant = bnb_config(cfg)
    if isinstance(dtype, str):
        dtype = compute_dtype(cfg) if dtype == "auto" and quant is not None else (
            "auto" if dtype == "auto" else DTYPES[dtype])
    kwargs: dict = {"dtype": dtype, "trust_remote_code": trust_remote_code, "allow_pickle": allow_pickle}
    if quant is not None:
        kwargs["quantization_config"] = quant
    if cfg.task == "seq_cls":
        if num_labels is None:
            raise UserError("a seq_cls base needs num_labels", field="num_labels",
                            fix="pass the number of classes (1 for regression)")
        model_config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        # a classifier folder of another task records its problem_type, which the new label count
        # may contradict (transformers validates the pair): clear it before changing num_labels
        model_config.problem_type = None
        model_config.num_labels = num_labels
        model_config.problem_type = "regression" if num_labels == 1 else None
        if getattr(model_config, "pad_token_id", None) is None:
            eos = getattr(model_config, "eos_token_id", None)  # a list in Llama 3.x and Gemma 3 configs
            model_config.pad_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos
        # a classifier folder from another task (intermediate-task training) keeps its head when the
        # label count matches and gets a fresh one when it does not, as run_glue's --ignore_mismatched_sizes
        model = load_model(path, AutoModelForSequenceClassification, config=model_config,
                           ignore_mismatched_sizes=True, **kwargs)
    else:
        model = load_model(path, AutoModelForCausalLM, **kwargs)
    if quant is not None:
        _release_checkpoint(model)
        set_bnb_cpu_packing(model, enabled=False)  # the same numbers on every CPU kind
    return model


def _release_checkpoint(model: nn.Module) -> None:
    """Give the unquantized tensors (embeddings, norms, heads) their own memory.

    transformers leaves them as views into the memory-mapped checkpoint, which keeps the whole
    file mapped, and quantizing read every page of it: without this the process keeps the full
    fp32 checkpoint resident (e.g. 0.3 GiB of page cache for a 100M model) next to the 4-bit
    weights.
    """
    import bitsandbytes as bnb

    seen: set[int] = set()
    for module in model.modules():
        tensors = list(module._parameters.values()) + list(module._buffers.values())
        for t in tensors:
            if t is None or id(t) in seen or isinstance(t, (bnb.nn.Params4bit, bnb.nn.Int8Params)):
                continue
            seen.add(id(t))
            t.data = t.data.clone()
