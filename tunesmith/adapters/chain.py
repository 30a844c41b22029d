"""Stages that chain: every place that takes a model also takes a run directory or an adapter folder.

- a run directory (holds `results.json` or `model/`) stands for the model it trained;
- an adapter folder stands for its recorded base with the adapter on it. A stage that loads it as a
  full model (`model.adapter: merge`, the default, and every model that is not trained: DPO's
  reference copy, a distillation teacher, `eval`, `perplexity`) gets the adapter merged into its base,
  written once beside the adapter (`<run>/merged` for a run's `model/`, else `<folder>-merged`) and
  reused while it is newer than the adapter. A new adapter trained on it records that merged folder
  as its base (an absolute path), so it loads with stock PEFT;
- `model.adapter: continue` trains the adapter itself further: its base (quantized as it was
  trained) with the adapter made trainable; the result records the original base;
- a Hugging Face Hub id (`owner/name`, `owner/name@revision`) that is not a local path stands for the
  repo's snapshot in the Hugging Face cache, downloaded first when online (`core.modelio.resolve_model`);
  a Hub adapter repo is merged into `<HF_HOME>/assets/tunesmith/merged/<owner>--<name>--<commit>`.

    model_folder("runs/sft")          # -> runs/sft/merged when runs/sft/model is a LoRA adapter
    model_folder("Qwen/Qwen3-0.6B")   # -> ~/.cache/huggingface/hub/models--Qwen--Qwen3-0.6B/snapshots/<commit>
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.modelio import hub_source, resolve_model


def is_adapter_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def run_output(path: str | os.PathLike, field: str = "model.path") -> Path:
    """The model a run directory trained (`results.json`'s model_path, else its `model/` or
    `adapter/`); a Hub id: its snapshot folder (`resolve_model`); any other path as given."""
    p = resolve_model(path, field=field)
    if (p / "config.json").is_file() or is_adapter_folder(p):
        return p
    results = p / "results.json"
    if results.is_file():
        try:
            recorded = json.loads(results.read_text(encoding="utf-8")).get("model_path")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded:
            return Path(recorded) if Path(recorded).is_absolute() or Path(recorded).exists() else p / Path(recorded).name
    for name in ("model", "adapter"):
        if (p / name).is_dir():
            return p / name
    return p


def merged_folder(adapter_dir: Path) -> Path:
    """Where the merged copy of `adapter_dir` lives: beside it; for a Hub adapter (a snapshot in the
    Hugging Face cache, which is not ours to write into) in huggingface_hub's assets cache."""
    source = hub_source(adapter_dir)
    if source is not None:
        from huggingface_hub import cached_assets_path, constants

        repo, commit = source
        return cached_assets_path("tunesmith", namespace="merged", subfolder=f"{repo.replace('/', '--')}--{commit}",
                                  assets_dir=constants.HF_ASSETS_CACHE)
    if adapter_dir.name in ("model", "adapter") and (adapter_dir.parent / "config.yaml").is_file():
        return adapter_dir.parent / "merged"
    return adapter_dir.with_name(adapter_dir.name + "-merged")


def _fresh(merged: Path, adapter_dir: Path) -> bool:
    if not (merged / "config.json").is_file():
        return False
    weights = [f.stat().st_mtime for f in adapter_dir.glob("adapter_model.*")]
    return not weights or (merged / "config.json").stat().st_mtime >= max(weights)


def model_folder(path: str | os.PathLike, field: str = "model.path") -> Path:
    """A full model folder for `path`: a model folder as it is, a run directory's model, an adapter
    merged into its recorded base (written once beside it, then reused)."""
    p = run_output(path, field)
    if not is_adapter_folder(p):
        return p
    merged = merged_folder(p)
    if not _fresh(merged, p):
        from .merge import merge

        merge(p, merged)  # refuses prompt/prefix-tuning adapters (virtual tokens cannot be merged)
    return merged
