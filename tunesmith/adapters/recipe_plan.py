"""The memory plan of a stage recipe: which model, which adapter block, which batch shape."""
from __future__ import annotations

from typing import Any

from .config import AdapterConfig
from .planner import MemoryPlan, fitting, plan


def recipe_model(recipe: dict[str, Any]):
    """The model a recipe trains: `model.path` (alignment/finetune stages), `model.from_pretrained`,
    or the pretraining preset it would build (a transformers config, no weights)."""
    model = recipe.get("model") or {}
    if isinstance(model, str):
        return model
    for key in ("path", "from_pretrained"):
        if model.get(key):
            return model[key]
    from ..pretraining.presets import make_config, resolve_shape

    shape = resolve_shape(model.get("size", "nano"), **{k: model.get(k) for k in (
        "layers", "hidden", "heads", "kv_heads", "intermediate", "context")},
        vocab=model.get("vocab") or (recipe.get("tokenizer") or {}).get("vocab_size"))
    return make_config(model.get("family", "llama"), shape)


def recipe_shape(recipe: dict[str, Any]) -> tuple[int, int]:
    """(micro-batch, sequence length) from the recipe's train/data blocks."""
    train = recipe.get("train") or {}
    batch = train.get("micro_batch_size") or train.get("batch_size") or 1
    seq = None
    for block in ("data", "sft", "dpo", "kto", "orpo", "simpo", "reward", "distill"):
        section = recipe.get(block) or {}
        seq = seq or section.get("block_size") or section.get("max_length")
    return int(batch), int(seq or 512)


def plan_recipe(recipe: dict[str, Any], *, device: str = "cpu", memory: str | None = None,
                batch_size: int | None = None, seq_len: int | None = None) -> tuple[MemoryPlan, list[MemoryPlan]]:
    """The plan for the recipe as written, and (with `memory`) the settings that would fit."""
    adapter = AdapterConfig.model_validate(recipe.get("adapter") or {"method": "full"})
    batch, seq = recipe_shape(recipe)
    batch, seq = batch_size or batch, seq_len or seq
    model = recipe_model(recipe)
    main = plan(model, adapter, batch_size=batch, seq_len=seq, device=device)
    options = fitting(model, memory, batch_size=batch, seq_len=seq, device=device, task=adapter.task) \
        if memory else []
    return main, options
