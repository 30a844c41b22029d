"""Workarounds of library behaviour, each with the version it targets and a test that fails
when the library changes under it (tests/core/test_compat.py).

Every place where tunesmith undoes or steers around a library's behaviour lives here:
- `prefix_tuning_backbone`: peft <= 0.21.2 decides whether an encoder can take prefix tuning by
  looking for a `past_key_values` parameter in the backbone's `forward` signature; transformers
  5.24 renamed it `cache` in BERT-style encoders (the old name still works through
  `deprecate_kwarg` until 5.40), so peft refuses a model that works.
- `bnb_cpu_packed_path`: bitsandbytes >= 0.49 repacks a 4-bit weight into a CPU-specific layout
  on AVX512-BF16 CPUs the first time `Linear4bit` runs without grad, which changes the numbers
  and crashes on layers narrower than the quantization block. tunesmith runs the same
  dequantize-then-matmul path on every CPU (see `tunesmith.adapters.quantize`).
"""
from __future__ import annotations

import functools
import inspect
from torch import nn

# --- peft prefix tuning on encoders (peft 0.21.2, transformers 5.24) ------------------------
# peft/peft_model.py PeftModelForSequenceClassification._prefix_tuning_forward:
#   fwd_params = inspect.signature(backbone.forward).parameters
#   if "past_key_values" not in fwd_params: raise ValueError("Model does not support past key values")


def _takes(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def prefix_tuning_backbone(peft_model: nn.Module) -> bool:
    """Let peft's prefix tuning reach an encoder whose forward names its cache `cache`.

    Gives the backbone (peft's `transformer_backbone_name`, e.g. `bert`) an instance `forward`
    that takes `past_key_values` and passes it on as `cache`. Returns whether it was needed.
    """
    name = getattr(peft_model, "transformer_backbone_name", None)
    if name is None:
        return False
    backbone = peft_model.base_model.get_submodule(name)
    original = backbone.forward
    if _takes(original, "past_key_values") or not _takes(original, "cache"):
        return False

    @functools.wraps(original)
    def forward(*args, past_key_values=None, **kwargs):
        if past_key_values is not None:
            kwargs["cache"] = past_key_values
        return original(*args, **kwargs)

    sig = inspect.signature(original)
    extra = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    params = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    params += [extra] + [p for p in sig.parameters.values() if p.kind == inspect.Parameter.VAR_KEYWORD]
    forward.__signature__ = sig.replace(parameters=params)
    backbone.forward = forward
    return True


# --- bitsandbytes' CPU packed 4-bit layout (bitsandbytes 0.49-0.50.2) -------------------------
# bitsandbytes/nn/modules.py:
#   Linear4bit.__init__: self.support_avx512bf16_for_cpu = has_avx512bf16()
#   Linear4bit.forward: if x.device.type == "cpu" and self.support_avx512bf16_for_cpu
#       and not self.training and not x.requires_grad and not quant_state.packing_format_for_cpu:
#           self.weight.data, quant_state = _convert_weight_packed_for_cpu(...)
# The packed layout keeps absmax in bf16 and multiplies in bf16 (a C++ AVX512-BF16 kernel);
# `peft`'s merge dequantizes the weight as if it were unpacked.
BNB_PACKING_FLAG = "support_avx512bf16_for_cpu"


def bnb_packs_on_this_cpu() -> bool:
    """Whether bitsandbytes would repack 4-bit weights on this CPU (AVX512-BF16 CPUs only)."""
    try:
        from bitsandbytes.functional import has_avx512bf16
    except ImportError:
        return False
    return bool(has_avx512bf16())


def bnb_is_packed(module: nn.Module) -> bool:
    """Whether a Linear4bit's weight is in the CPU-specific packed layout now."""
    state = getattr(getattr(module, "weight", None), "quant_state", None)
    return bool(getattr(state, "packing_format_for_cpu", False))


def set_bnb_cpu_packing(model: nn.Module, enabled: bool) -> int:
    """Turn bitsandbytes' CPU packed 4-bit path on or off for every `Linear4bit` in `model`;
    returns how many layers were set. Off (what `load_base` does) every CPU runs the same
    dequantize-then-matmul path in the compute dtype; a packed weight is unpacked first. On only
    where the CPU has AVX512-BF16 (the kernel needs it)."""
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    count = 0
    for module in model.modules():
        if not isinstance(module, Linear4bit):
            continue
        if not enabled and bnb_is_packed(module):
            weight = module.weight
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                weight.data, weight.quant_state)
            module.quant_state = weight.quant_state
        setattr(module, BNB_PACKING_FLAG, bool(enabled) and bnb_packs_on_this_cpu())
        count += 1
    return count
