"""Several adapters on one base: load, switch, combine (weighted add) and stack.

Stacking is how pipelines chain stages (an SFT adapter under a DPO adapter): either the
earlier adapter is merged into the base before the next one is applied (`merge_first=True`,
one adapter to ship), or it stays a separate frozen adapter that is active under the new,
trainable one (two small folders, the first reusable).
"""
from __future__ import annotations

import os
from pathlib import Path

from peft import PeftModel
from torch import nn

from ..core.errors import UserError
from ..core.modelio import load_peft
from .apply import apply
from .config import AdapterConfig


def load_many(base: nn.Module, adapters: dict[str, str | os.PathLike]) -> PeftModel:
    """`base` with every adapter in `adapters` ({name: folder}) loaded; the first is active.

    model = load_many(base, {"math": "runs/math/adapter", "code": "runs/code/adapter"})
    """
    if not adapters:
        raise UserError("no adapters given", field="adapters", fix="pass {name: folder, ...}")
    items = list(adapters.items())
    model = load_peft(base, items[0][1], adapter_name=items[0][0])
    for name, path in items[1:]:
        model.load_adapter(path, adapter_name=name)
    model.set_adapter(items[0][0])
    return model


def switch(model: PeftModel, name: str) -> PeftModel:
    """Make adapter `name` the active one."""
    if name not in model.peft_config:
        raise UserError(f'no adapter named "{name}"', field="adapter",
                        fix=f"loaded adapters: {', '.join(model.peft_config)}")
    model.set_adapter(name)
    return model


def combine(model: PeftModel, weights: dict[str, float], name: str = "combined",
            how: str = "linear") -> PeftModel:
    """Add a new adapter `name` = weighted sum of loaded LoRA adapters, and activate it.

    `how` is peft's combination type: "linear" (same-rank adapters, weighted add of A and
    B), "cat" (concatenates ranks: exact weighted sum of the deltas) or "svd".

    combine(model, {"math": 0.7, "code": 0.3}, how="cat")
    """
    for adapter in weights:
        switch(model, adapter)
        if getattr(model.peft_config[adapter], "trainable_token_indices", None):
            # peft combines only the LoRA matrices: the new adapter's token rows would be the base's
            raise UserError(f"adapter {adapter!r} also trains token rows (trainable_token_indices), "
                            "which peft's weighted combination drops", field="adapters",
                            fix="merge each adapter into the base instead, or train with "
                                "adapter.trainable_tokens: none")
    model.add_weighted_adapter(list(weights), list(weights.values()), adapter_name=name,
                               combination_type=how)
    model.set_adapter(name)
    return model


def stack(base: nn.Module, earlier: str | os.PathLike, adapter: AdapterConfig, *,
          merge_first: bool = True, name: str = "default") -> PeftModel:
    """Put a new trainable adapter on top of the adapter folder `earlier`.

    merge_first=True: `earlier` is merged into the base weights, then `adapter` is applied.
    merge_first=False: `earlier` is loaded frozen as adapter "earlier" and stays active
    under the new one; save the new one alone with
    `model.save_pretrained(dir, selected_adapters=[name])`.
    """
    if merge_first:
        merged = load_peft(base, Path(earlier)).merge_and_unload()
        return apply(merged, adapter)
    model = load_peft(base, Path(earlier), adapter_name="earlier")
    model.add_adapter(name, _peft_config_for(model.get_base_model(), adapter))
    model.base_model.set_adapter(["earlier", name])
    for param_name, param in model.named_parameters():
        param.requires_grad_(f".{name}." in param_name or param_name.endswith(f".{name}"))
    return model


def _peft_config_for(base: nn.Module, adapter: AdapterConfig):
    from .apply import peft_config
    if adapter.method not in ("lora", "dora", "rslora"):
        raise UserError(f"only lora, dora and rslora adapters can be stacked unmerged, not "
                        f"{adapter.method}", field="adapter.method",
                        fix="use merge_first=True, or method lora")
    return peft_config(base, adapter)
