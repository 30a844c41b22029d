"""`tunesmith run RECIPE`: several stages in one recipe, each stage's model feeding the next.

    run: {dir: runs/pipe}
    stages:
      - {stage: pretrain, train: {max_steps: 400}}
      - {stage: sft, adapter: {method: lora}, tasks: {names: [add]}}
      - {stage: dpo, adapter: {method: lora}, tasks: {names: [add]}}

Each stage writes its own run directory `RUN/<n>-<name>/`. A stage that trains an adapter
hands the next stage its merged model (`RUN/<n>-<name>/merged`, the base dtype, QLoRA
dequantized). Re-running the same recipe skips finished stages (they have results.json)
and resumes an interrupted one from its last complete checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from .core.config import Section, coerce, deep_merge
from .core.rundir import RunDir, atomic_write_json, check_writable_dir, default_run_dir
from .core.train_config import no_parent_hops
from .stages import STAGES, get_stage

class PipelineRun(Section):
    dir: str | None = Field(None, description="the pipeline's run directory (default: runs/run-<timestamp>)")

    _dir_ok = field_validator("dir")(no_parent_hops)


class PipelineConfig(Section):
    run: PipelineRun = Field(default_factory=PipelineRun)
    stages: list[dict[str, Any]] = Field(min_length=1, description="stages in order: {stage: NAME, name?: ..., "
                                                                   "<that stage's config sections>}; NAME is one "
                                                                   "of " + ", ".join(STAGES))


@dataclass
class PipelineResult:
    run_dir: Path
    model_path: Path | None
    metrics: dict = field(default_factory=dict)  # "<n>-<name>/<metric>" -> value
    stages: list[dict] = field(default_factory=list)


def _output_of(stage_dir: Path) -> Path | None:
    for name in ("model", "adapter"):
        if (stage_dir / name).is_dir():
            return stage_dir / name
    return None


def wire_model(kind: str, cfg: dict, previous: Path | None) -> dict:
    """The stage's config with the previous stage's model where the stage reads its model (its
    `model_key` in the stage table), unless the stage names one itself."""
    if previous is None:
        return cfg
    *parents, leaf = STAGES[kind].model_key.split(".")
    node = out = dict(cfg)
    for part in parents:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    if not node.get(leaf):
        node[leaf] = str(previous)
    return out


def run_pipeline(config: PipelineConfig | dict | str | None = None, **sections) -> PipelineResult:
    """Run every stage in order (see the module docstring for the recipe shape)."""
    cfg = coerce(PipelineConfig, config, **sections)
    plan = []
    for i, stage in enumerate(cfg.stages, start=1):
        kind = stage.get("stage")
        get_stage(kind, field=f"stages.{i - 1}.stage", where=f"stage {i}: ")
        name = str(stage.get("name", kind))
        plan.append((i, kind, name, {k: v for k, v in stage.items() if k not in ("stage", "name")}))
    root_dir = Path(cfg.run.dir or default_run_dir("run"))
    check_writable_dir(root_dir)  # a file, or a folder that cannot be written: one line, nothing made
    root = RunDir(root_dir).make()
    atomic_write_json(root.path / "pipeline.json", cfg.model_dump(mode="json"))
    previous: Path | None = None
    result = PipelineResult(root.path, None)
    for i, kind, name, stage_cfg in plan:
        stage_dir = root.path / f"{i}-{name}"
        done = (stage_dir / "results.json").exists()
        if not done:
            started = stage_dir.exists() and any(stage_dir.iterdir())
            stage_cfg = wire_model(kind, stage_cfg, previous)
            resumable = started and STAGES[kind].kind == "train"
            run_block = {"dir": str(stage_dir), **({"resume": True} if resumable else {}),
                         **({"overwrite": True} if started else {})}
            stage_cfg = deep_merge(stage_cfg, {"run": run_block})
            STAGES[kind].run(stage_cfg)
        output = _output_of(stage_dir)
        saved = json.loads((stage_dir / "results.json").read_text()) if (stage_dir / "results.json").exists() else {}
        metrics = saved.get("metrics", saved) if isinstance(saved, dict) else {}
        for k, v in (metrics or {}).items():
            if isinstance(v, (int, float)):
                result.metrics[f"{i}-{name}/{k}"] = v
        result.stages.append({"stage": kind, "name": name, "dir": str(stage_dir), "skipped": done,
                              "output": str(output) if output else None})
        if output is not None:
            from .adapters.chain import model_folder  # (loads torch: not at import)

            previous = model_folder(output)  # an adapter: merged into its base as RUN/<n>-<name>/merged
    result.model_path = previous
    atomic_write_json(root.path / "results.json", {"stages": result.stages, "metrics": result.metrics,
                                                   "model_path": str(previous) if previous else None})
    if root.main:  # the root's report: every stage's curves and results on one page
        from .report import write_report

        write_report(root.path)
    return result
