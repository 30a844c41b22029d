"""Evaluation results: per-task metrics, leaderboard scores (x100), the benchmark average,
as JSON and as a Markdown table (which also prints well in a terminal).

print(markdown_table(result))
# -> | Task | N | Metrics (x100) | Score |
# -> |---|---|---|---|
# -> | RTE | 277 | accuracy 61.4 | 61.4 |
# -> | **GLUE average** (1/9 tasks) | | | **61.4** |
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.rundir import RunDir

GLUE_AVERAGE_TASKS = 9  # CoLA, SST-2, MRPC, STS-B, QQP, MNLI (m+mm), QNLI, RTE, WNLI
SUPERGLUE_AVERAGE_TASKS = 8  # BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC

_SHORT = {"accuracy": "acc", "matthews_correlation": "mcc", "spearmanr": "spearman",
          "exact_match": "em", "gender_parity": "parity"}


@dataclass
class TaskResult:
    """One task's result: `metrics` are fractions (the mean over seeds), `score` is the
    leaderboard number x100, `score_std` its standard deviation over seeds."""

    task: str
    title: str
    n: int
    metrics: dict[str, float]
    score: float
    score_std: float | None = None
    seeds: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class EvalResult:
    benchmark: str
    protocol: str
    model: str
    tasks: list[TaskResult]
    average: float | None
    averaged_tasks: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def task(self, name: str) -> TaskResult:
        return next(t for t in self.tasks if t.task == name)


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return " / ".join(f"{_SHORT.get(k, k)} {100 * v:.1f}" for k, v in metrics.items())


def markdown_table(result: EvalResult) -> str:
    """The results as a Markdown table, one row per task and the benchmark average last."""
    multi = any(t.score_std is not None for t in result.tasks)
    head = "| Task | N | Metrics (x100) | Score |" + (" Std |" if multi else "")
    lines = [head, "|---|---|---|---|" + ("---|" if multi else "")]
    for t in result.tasks:
        std = f" {t.score_std:.1f} |" if t.score_std is not None else (" |" if multi else "")
        lines.append(f"| {t.title} | {t.n} | {_fmt_metrics(t.metrics)} | {t.score:.1f} |{std}")
    if result.average is not None:
        total = GLUE_AVERAGE_TASKS if result.benchmark == "glue" else SUPERGLUE_AVERAGE_TASKS
        name = "GLUE" if result.benchmark == "glue" else "SuperGLUE"
        lines.append(f"| **{name} average** ({result.averaged_tasks}/{total} tasks) | | | "
                     f"**{result.average:.1f}** |" + (" |" if multi else ""))
    return "\n".join(lines)


def write_results(run: RunDir, result: EvalResult) -> None:
    """results.json and results.md in the run directory (atomic writes)."""
    from ..core.rundir import atomic_write_text

    run.write_json("results.json", result.to_dict())
    if run.main:
        atomic_write_text(run.path / "results.md",
                          f"# {result.benchmark} - {result.protocol} - {result.model}\n\n"
                          f"{markdown_table(result)}\n")
