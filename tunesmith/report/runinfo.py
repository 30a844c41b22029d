"""Reading a run directory back: config, environment record, metrics, results, eval tables,
data card, peak memory. A pipeline run is a folder whose sub-folders are run directories
(one per stage); each stage is read the same way.

info = read_run("runs/nano")
info.results["eval_loss"], len(info.metrics)
# -> (6.12, 9)
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError

RUN_MARKERS = ("config.yaml", "metrics.jsonl", "results.json", "environment.json")
EVAL_TABLE = "results.md"        # written by tunesmith.eval.report.write_results
DATA_CARD_MD, DATA_CARD_JSON = "data_card.md", "data_card.json"
MEMORY_KEYS = ("peak_rss_mb", "peak_cuda_mb")


@dataclass
class RunInfo:
    """Everything the report shows about one run (or one pipeline stage)."""

    path: Path
    name: str
    config_text: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)       # training results.json metrics
    raw_results: dict[str, Any] = field(default_factory=dict)   # results.json as written
    sample: str | None = None
    eval_result: dict[str, Any] | None = None                    # tunesmith.eval EvalResult as a dict
    eval_table: str | None = None                                # its Markdown table
    data_card: str | None = None                                 # Markdown
    memory: dict[str, float] = field(default_factory=dict)
    stages: list["RunInfo"] = field(default_factory=list)

    @property
    def model_dir(self) -> Path | None:
        """The trained artifact: `model/` (pretrain, alignment) or `adapter/` (transfer)."""
        for name in ("model", "adapter"):
            if (self.path / name).is_dir():
                return self.path / name
        for key in ("model_path", "adapter_dir"):
            recorded = self.raw_results.get(key)
            if isinstance(recorded, str) and Path(recorded).is_dir():
                return Path(recorded)
        return None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in RUN_MARKERS)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def stage_dirs(path: Path) -> list[Path]:
    """Sub-folders that are run directories, in natural name order (`2-dpo` before `10-eval`)."""
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and is_run_dir(p)]
    return sorted(subs, key=_natural_key)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e.msg}", file=path, line=e.lineno,
                        fix="the run may have been interrupted while writing; re-run the stage") from None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of dicts; a broken line is an error naming its line number."""
    if not path.is_file():
        return []
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"not valid JSON: {e.msg}", file=path, line=i,
                            fix="delete the broken line (a run killed mid-write leaves one)") from None
        if not isinstance(record, dict):
            raise UserError("each line must be a JSON object", file=path, line=i)
        records.append(record)
    return records


def _memory(environment: dict, metrics: list[dict]) -> dict[str, float]:
    mem = {k: v for k, v in (environment.get("peak_memory") or {}).items() if isinstance(v, (int, float))}
    for record in metrics:              # log_peak_memory lines; the largest value wins
        for key in MEMORY_KEYS:
            if isinstance(record.get(key), (int, float)):
                mem[key] = max(mem.get(key, 0.0), float(record[key]))
    return mem


def _data_card(path: Path) -> str | None:
    if (path / DATA_CARD_MD).is_file():
        return (path / DATA_CARD_MD).read_text(encoding="utf-8")
    if (path / DATA_CARD_JSON).is_file():
        from ..data.card import render_card

        return render_card(_read_json(path / DATA_CARD_JSON))
    return None


def _read_one(path: Path) -> RunInfo:
    info = RunInfo(path=path, name=path.name)
    if (path / "config.yaml").is_file():
        info.config_text = (path / "config.yaml").read_text(encoding="utf-8")
    if (path / "environment.json").is_file():
        info.environment = _read_json(path / "environment.json")
    info.metrics = read_metrics(path / "metrics.jsonl")
    if (path / "results.json").is_file():
        results = _read_json(path / "results.json")
        if isinstance(results, dict) and "tasks" in results and "benchmark" in results:
            info.eval_result = results
        elif isinstance(results, dict):
            info.raw_results = results
            # {"metrics": {...}, ...} (pretrain, adapters) or the metrics themselves (alignment)
            metrics = results["metrics"] if isinstance(results.get("metrics"), dict) else results
            info.results = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))
                            and k not in ("sample", "model_path", "adapter_dir")}
            info.sample = results.get("sample") if isinstance(results.get("sample"), str) else None
    if (path / EVAL_TABLE).is_file():
        info.eval_table = (path / EVAL_TABLE).read_text(encoding="utf-8")
    info.data_card = _data_card(path)
    info.memory = _memory(info.environment, info.metrics)
    return info


def read_run(path: str | os.PathLike) -> RunInfo:
    """Read a run directory (or a pipeline folder of stage run directories).

    [s.name for s in read_run("runs/pipeline").stages]
    # -> ['1-sft', '2-dpo', '3-eval']
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError("run directory not found", file=path, fix="pass the folder a stage wrote (run.dir)")
    stages = stage_dirs(path)
    if not is_run_dir(path) and not stages:
        raise UserError("not a run directory: no config.yaml, metrics.jsonl, results.json or "
                        "environment.json here, nor in any sub-folder", file=path,
                        fix="pass the folder a stage wrote (run.dir)")
    info = _read_one(path)
    info.stages = [read_run(s) for s in stages]
    return info
