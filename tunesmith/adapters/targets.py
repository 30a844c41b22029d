"""Which modules an adapter touches: every linear layer of the transformer blocks.

Works on any architecture by walking the module tree: `nn.Linear`, GPT-2's `Conv1D` and
the bitsandbytes 4-bit/8-bit linears count as linear; the output head (lm_head,
classifier, score) and embeddings never do. Names are reported relative to their block
(`self_attn.q_proj`, `mlp.c_proj`), which is both readable and unambiguous.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn
from transformers.pytorch_utils import Conv1D

from ..core.errors import UserError

# heads: trained fully (seq_cls) or left alone (causal_lm), never given adapter weights
HEAD_NAMES = ("lm_head", "classifier", "score", "embed_out", "qa_outputs", "cls")
# parts of a classification model that belong to its head (trained fully under seq_cls)
SEQ_CLS_HEAD_NAMES = ("classifier", "score", "pooler")
# the insides of a peft-wrapped layer: the wrapper itself is the target, not these
_PEFT_PARTS = {"base_layer", "lora_A", "lora_B", "lora_dropout", "modules_to_save",
               "original_module", "vera_dropout"}
_LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class LinearTarget:
    """One linear module: full dotted name, name inside its block, block index, shape."""

    name: str
    suffix: str
    layer: int | None
    in_features: int
    out_features: int

    @property
    def is_feedforward_out(self) -> bool:
        """A projection back down to the residual width (MLP output): IA3 scales its input."""
        return self.in_features > self.out_features


def _linear_classes() -> tuple[type, ...]:
    from peft.tuners.tuners_utils import BaseTunerLayer
    classes: list[type] = [nn.Linear, Conv1D, BaseTunerLayer]
    try:
        import bitsandbytes as bnb
        classes += [bnb.nn.Linear4bit, bnb.nn.Linear8bitLt]
    except ImportError:  # bitsandbytes is optional for full-precision bases
        pass
    return tuple(classes)


def _shape(module: nn.Module) -> tuple[int, int]:
    base = getattr(module, "base_layer", None)
    if base is not None:  # a peft-wrapped linear
        return _shape(base)
    if isinstance(module, Conv1D):  # GPT-2 stores the weight transposed
        return module.weight.shape[0], module.weight.shape[1]
    return module.in_features, module.out_features


def _is_head(name: str) -> bool:
    return any(part in HEAD_NAMES for part in name.split("."))


def find_linear_targets(model: nn.Module) -> list[LinearTarget]:
    """Every linear module outside the heads, in model order. Example:

    >>> from tunesmith.pretraining.presets import build_model
    >>> sorted({t.suffix for t in find_linear_targets(build_model("gpt2", "nano"))})
    ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']
    """
    linear = _linear_classes()
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, linear) or _is_head(name) or _PEFT_PARTS & set(name.split(".")):
            continue
        match = None
        for match in _LAYER_INDEX.finditer(name):
            pass  # keep the last "<digits>." group: the block index
        layer = int(match.group(1)) if match else None
        suffix = name[match.end():] if match else name
        found.append(LinearTarget(name, suffix, layer, *_shape(module)))
    return found


def default_target_names(model: nn.Module, exclude: tuple[str, ...] = ()) -> list[str]:
    """The suffixes of all block linears (plus any outside blocks), minus `exclude`d parts."""
    names = []
    for t in find_linear_targets(model):
        if any(part in exclude for part in t.name.split(".")):
            continue
        if t.suffix not in names:
            names.append(t.suffix)
    if not names:
        raise UserError(f"found no linear layers to adapt in {type(model).__name__}",
                        field="adapter.target_modules", fix="list the module names to adapt")
    return names


def matches(name: str, target: str) -> bool:
    """peft's rule: a target matches a module whose dotted name equals it or ends with it."""
    return name == target or name.endswith("." + target)


def check_target_names(model: nn.Module, targets: list[str]) -> None:
    """Raise a UserError naming any target that matches no module, with the closest names."""
    module_names = [n for n, _ in model.named_modules() if n]
    linear_suffixes = sorted({t.suffix for t in find_linear_targets(model)})
    for target in targets:
        if any(matches(n, target) for n in module_names):
            continue
        close = difflib.get_close_matches(target, linear_suffixes, n=3, cutoff=0.4)
        hint = (f"did you mean {', '.join(close)}?" if close
                else f"linear modules: {', '.join(linear_suffixes)}")
        raise UserError(f'no module named "{target}" in {type(model).__name__}',
                        field="adapter.target_modules", fix=hint)


def select(model: nn.Module, targets: list[str], layers: list[int] | None) -> list[LinearTarget]:
    """The linear modules that `targets` (suffix names) and `layers` pick out."""
    chosen = [t for t in find_linear_targets(model) if any(matches(t.name, x) for x in targets)]
    if layers is not None:
        present = {t.layer for t in find_linear_targets(model) if t.layer is not None}
        missing = sorted(set(layers) - present)
        if missing:
            raise UserError(f"layer indices {missing} do not exist (model has layers "
                            f"{min(present, default=0)}..{max(present, default=-1)})",
                            field="adapter.layers", fix="pick indices inside that range")
        chosen = [t for t in chosen if t.layer in layers]
    return chosen
