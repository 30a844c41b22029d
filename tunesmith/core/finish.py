"""The end of every stage: peak memory into metrics.jsonl, the run report, the optional push."""
from __future__ import annotations

from typing import Any

from .rundir import RunDir


def finish_run(run: RunDir, step: int | None = None, push_to_hub: Any = None) -> dict:
    """Log peak memory, write report.md/report.html, push when the recipe asks. Main process only.
    Returns {"peak_memory": ..., "report": path, "pushed": url}."""
    from ..report import log_peak_memory, write_report

    out: dict = {}
    out["peak_memory"] = log_peak_memory(run, step=step) if run.main else {}
    if not run.main:
        return out
    out["report"] = str(write_report(run.path).html)
    if push_to_hub is not None:
        from ..hub import push

        out["pushed"] = push(run.path, push_to_hub).url
    return out
