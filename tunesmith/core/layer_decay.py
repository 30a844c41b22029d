"""Layer-wise learning-rate decay (LLRD; the ELECTRA and DeBERTa GLUE recipes): the head trains at
the peak rate and each transformer block below it at `decay` times the rate of the block above,
so the lower, more general layers of a pretrained encoder move least.

Depth comes from parameter names as BERT-, GPT-2-, Llama- and T5-style models spell them: the
embeddings are depth 0, block i (`...layer.i.`, `layers.i.`, `h.i.`, `block.i.`) is i + 1, and
everything else (pooler, final norm, classifier, LM head) is the top. Layouts outside that
(ALBERT's shared layer groups; an encoder-decoder's two stacks share depths) are not ranked
faithfully; the fine-tune protocol's encoders and decoders are.

layer_depth("bert.encoder.layer.3.attention.self.query.weight")
# -> 4
use_layer_lr_decay(trainer, 0.8)  # before trainer.train()
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDING = re.compile(r"(?:^|\.|_)(?:embeddings?|embed_(?!out)\w+|wte|wpe)\.")  # NeoX's embed_out is its head


def layer_depth(name: str) -> int | None:
    """0 for embeddings, i + 1 for block i, None for what sits above the blocks."""
    if m := BLOCK.search(name):
        return int(m.group(1)) + 1
    return 0 if EMBEDDING.search(name) else None


def layerwise_groups(model: nn.Module, lr: float, decay: float, weight_decay: float,
                     decay_names: set[str]) -> list[dict[str, Any]]:
    """Optimizer parameter groups of the trainable parameters: lr * decay**(top - depth), with
    `weight_decay` on the names in `decay_names` (the Trainer's choice: not biases or norms)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    depths = {n: layer_depth(n) for n, _ in named}
    top = max((d for d in depths.values() if d is not None), default=0) + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for n, p in named:
        depth = top if depths[n] is None else depths[n]
        decayed = n in decay_names
        group = groups.setdefault((depth, decayed), {"params": [], "lr": lr * decay ** (top - depth),
                                                     "weight_decay": weight_decay if decayed else 0.0})
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def use_layer_lr_decay(trainer: Any, decay: float) -> Any:
    """Make `trainer` build its optimizer (its own class, betas, eps) over layer-wise groups; its
    scheduler then warms up and decays every group's own rate. decay 1 leaves it unchanged. Call
    it once, before `train()`, on a Trainer that builds its own optimizer; the groups hold this
    model's parameters, so a Trainer that re-creates its model (`model_init`) needs a new call."""
    if decay == 1.0:
        return trainer
    if trainer.optimizer is not None:
        raise ValueError("the Trainer was given an optimizer; layer-wise groups need it to build its own")
    model, args = trainer.model, trainer.args
    cls, kwargs = trainer.optimizer_cls_and_kwargs or trainer.get_optimizer_cls_and_kwargs(args, model)
    if {"model", "optimizer_dict"} & set(kwargs) or not isinstance(cls, type) \
            or not issubclass(cls, torch.optim.Optimizer):
        raise ValueError(f"optimizer {getattr(cls, '__name__', cls)} takes no parameter groups "
                         f"(args.optim={args.optim}); use an AdamW-style optimizer")
    groups = layerwise_groups(model, args.learning_rate, decay, args.weight_decay,
                              set(trainer.get_decay_parameter_names(model)))
    trainer.optimizer_cls_and_kwargs = (cls, {**kwargs, "params": groups})
    return trainer
