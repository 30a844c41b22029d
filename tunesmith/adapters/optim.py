"""The optimizer the adapter block selects, over the trainable parameters only.

`adamw` is torch's AdamW; `adamw_8bit`, `paged_adamw_8bit` and `paged_adamw_32bit` are
bitsandbytes' (8-bit states: 2 bytes per parameter instead of 8). `method: lora_fa`
uses peft's LoRA-FA optimizer, which freezes the A matrices and projects B's gradient.
Stages pass the result to a `Trainer` as `optimizers=(optimizer, None)`.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import AdapterConfig


def build_optimizer(model: nn.Module, adapter: AdapterConfig, lr: float,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer for `model`'s trainable parameters. Example:

    opt = build_optimizer(peft_model, AdapterConfig(optimizer="adamw_8bit"), lr=2e-4)
    """
    if adapter.method == "lora_fa":
        from peft.optimizers import create_lorafa_optimizer
        return create_lorafa_optimizer(model, r=adapter.rank, lora_alpha=adapter.resolved_alpha(),
                                       lr=lr, weight_decay=weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    if adapter.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    import bitsandbytes as bnb
    classes = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
               "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}
    return classes[adapter.optimizer](params, lr=lr, weight_decay=weight_decay)
