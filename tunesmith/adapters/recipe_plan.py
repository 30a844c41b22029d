"""The memory plan of a stage recipe (`tunesmith plan`, and every training command's `--dry-run`).

The recipe is validated through its stage's own config class (from the stage table), so the
model, adapter, batch and sequence length planned are the ones the stage would train with:
the recipe's values where it gives them, else the stage's defaults (no default is restated
here). A recipe names its stage with `--stage`, or a `stage:` key (as a pipeline's stage entries
do); otherwise the stage whose own block the recipe uses (`sft:`, `dpo:`, `teacher:`, ...), and a
recipe that names no model folder is a pretraining recipe (the only stage that builds its model).
A pipeline recipe is planned stage by stage, each stage on the model the one before it trained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ..core.config import Section, build, lookup
from ..core.errors import UserError
from ..stages import STAGES, Stage, get_stage, training_stages
from .config import AdapterConfig

ASSUMED_SEQ_LEN = 512  # only for a stage without a length setting


def _training_stage(name: str | None) -> str | None:
    if name is not None and name not in training_stages():
        raise ValueError(f"'{name}' is not a training stage; choose one of {', '.join(training_stages())}")
    return name


class PlanConfig(Section):
    """What `tunesmith plan` asks besides the recipe."""

    stage: str | None = Field(None, description="the stage the recipe is for (default: the recipe's `stage:` key, "
                                                "else the stage whose own block it has, else pretrain when it "
                                                "names no model folder)")
    memory: str | None = Field(None, description="budget, e.g. 16GB: also list the full / LoRA / QLoRA settings "
                                                 "that fit")
    batch_size: int | None = Field(None, ge=1, description="sequences per forward pass (default: the stage's "
                                                            "train.micro_batch_size, else train.batch_size)")
    seq_len: int | None = Field(None, ge=1, description="tokens per sequence (default: the stage's length "
                                                        "setting, e.g. sft.max_length or data.block_size)")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where the run trains")

    _stage_ok = field_validator("stage")(_training_stage)


@dataclass
class StagePlan:
    stage: str
    main: Any                              # planner.MemoryPlan of the recipe as written
    options: list = field(default_factory=list)  # with a memory budget: the settings that fit first
    notes: list[str] = field(default_factory=list)
    model: Any = None                      # what was planned: a folder, or a preset's transformers config


def _own_blocks() -> dict[str, set[str]]:
    """training stage -> the top-level keys no other training stage's config has."""
    keys = {name: set(STAGES[name].config_class().model_fields) for name in training_stages()}
    return {name: own - set().union(*(k for other, k in keys.items() if other != name))
            for name, own in keys.items()}


def stage_of(recipe: dict[str, Any], stage: str | None = None, source: str = "recipe") -> str:
    """Which stage a recipe is for (see the module docstring)."""
    if "stages" in recipe:
        raise UserError("is a pipeline recipe, not a stage recipe", file=source,
                        fix="plan_pipeline plans each of its stages, as `tunesmith plan PIPELINE.yaml` does")
    name = stage or recipe.get("stage")
    if name is None:
        hits = [n for n, own in _own_blocks().items() if own & recipe.keys()]
        model = recipe.get("model")
        names_folder = isinstance(model, str) or isinstance(model, dict) and model.get("path")
        if len(hits) == 1:
            name = hits[0]
        elif not hits and not names_folder:
            name = "pretrain"
        else:
            raise UserError("cannot tell which stage the recipe is for" + (f" ({' or '.join(hits)})" if hits else ""),
                            file=source, fix=f"pass --stage NAME or add `stage: NAME` ({', '.join(training_stages())})")
    if get_stage(name).kind != "train":
        raise UserError(f'stage "{name}" trains nothing, so it has no training memory to plan', field="stage",
                        fix=f"choose one of {', '.join(training_stages())}")
    return name


def stage_config(stage: str, recipe: dict[str, Any], source: str = "recipe") -> BaseModel:
    """The recipe validated into the stage's config (a pipeline entry's `stage:`/`name:` keys dropped)."""
    data = {k: v for k, v in recipe.items() if k not in ("stage", "name")}
    return build(STAGES[stage].config_class(), data, source)


def _model(stage: Stage, name: str, cfg: BaseModel):
    """What the stage trains: a local folder, or for pretraining the preset's transformers config."""
    folder = lookup(cfg, stage.model_key)
    if folder:
        return folder
    if name != "pretrain":
        raise UserError("the plan needs the model folder", field=stage.model_key,
                        fix=f"give --{stage.model_key} DIR")
    from ..pretraining.presets import make_config, resolve_shape

    m = cfg.model
    shape = resolve_shape(m.size, layers=m.layers, hidden=m.hidden, heads=m.heads, kv_heads=m.kv_heads,
                          intermediate=m.intermediate, context=m.context, vocab=m.vocab or cfg.tokenizer.vocab_size)
    return make_config(m.family, shape)


def _adapter(stage: Stage, name: str, cfg: BaseModel, notes: list[str]) -> AdapterConfig:
    """The stage's adapter block as it trains: full fine-tuning without one; AdamW where the stage
    does not use `adapter.optimizer`."""
    adapter = getattr(cfg, "adapter", None) or AdapterConfig(method="full")
    update: dict[str, Any] = {}
    if not stage.adapter_optimizer and adapter.optimizer != "adamw":
        notes.append(f"adapter.optimizer {adapter.optimizer} is not used by {name} (it trains with AdamW): "
                     "planned with adamw")
        update["optimizer"] = "adamw"
    return adapter.model_copy(update=update) if update else adapter


def _shape(stage: Stage, name: str, cfg: BaseModel, options: PlanConfig, notes: list[str]) -> tuple[int, int]:
    """(sequences per forward pass, tokens per sequence): the flags', else the stage's."""
    train = cfg.train
    batch = options.batch_size or getattr(train, "micro_batch_size", None) or train.batch_size
    seq = options.seq_len or stage.seq_len(cfg)
    if seq is None:
        seq = ASSUMED_SEQ_LEN
        notes.append(f"{name} has no length setting{f' ({stage.length_key} is null)' if stage.length_key else ''}: "
                     f"planned at {seq} tokens per sequence (--seq-len N to change)")
    return batch, seq


def plan_stage(name: str, cfg: BaseModel, options: PlanConfig | None = None, model: Any = None) -> StagePlan:
    """The memory plan of a validated stage config (of `model` instead of the one it names, for a
    pipeline stage fed by the one before), and with `options.memory` the settings that fit."""
    from .planner import fitting, plan

    options = options or PlanConfig()
    stage, notes = STAGES[name], []
    adapter = _adapter(stage, name, cfg, notes)
    batch, seq = _shape(stage, name, cfg, options, notes)
    model = model if model is not None else _model(stage, name, cfg)
    main = plan(model, adapter, batch_size=batch, seq_len=seq, device=options.device,
                gradient_checkpointing=getattr(getattr(cfg, "train", None), "gradient_checkpointing", False))
    fits = []
    if options.memory:
        fits = [p for p in fitting(model, options.memory, batch_size=batch, seq_len=seq, device=options.device,
                                   task=adapter.task)
                if stage.adapter_optimizer or p.settings["optimizer"] == "adamw"]
    return StagePlan(name, main, fits, notes, model)


def plan_recipe(recipe: dict[str, Any], options: PlanConfig | None = None, source: str = "recipe") -> StagePlan:
    """`tunesmith plan`: find the recipe's stage, validate the recipe through its config, plan it."""
    options = options or PlanConfig()
    name = stage_of(recipe, options.stage, source)
    return plan_stage(name, stage_config(name, recipe, source), options)


def plan_pipeline(recipe: dict[str, Any], options: PlanConfig | None = None,
                  source: str = "pipeline") -> list[StagePlan]:
    """A plan per training stage of a pipeline recipe; a stage without a model of its own is planned
    on what the stage before it trained, as `tunesmith run` feeds it."""
    from ..pipeline import PipelineConfig, wire_model

    plans: list[StagePlan] = []
    for i, entry in enumerate(build(PipelineConfig, recipe, source).stages):
        name = entry.get("stage")
        if get_stage(name, field=f"stages.{i}.stage", where=f"stage {i + 1}: ").kind != "train":
            continue
        fed = wire_model(name, entry, "<the previous stage's model>") if plans else entry
        cfg = stage_config(name, fed, f"{source}: stage {i + 1}")
        plans.append(plan_stage(name, cfg, options, model=plans[-1].model if fed != entry else None))
    return plans
