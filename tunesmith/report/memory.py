"""Peak memory of this process (and of the GPU when there is one), for stages to log at the end.

A stage calls `log_peak_memory(run, step)` once training is over; the line lands in
`metrics.jsonl` and the run report shows it.

log_peak_memory(run, step=state.global_step)
# -> {'step': 30, 'peak_rss_mb': 812.4}
"""
from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

# ru_maxrss is in kilobytes on Linux and in bytes on macOS
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def _peak_rss_bytes() -> int:
    """Linux: VmHWM of /proc/self/status, the peak of this program alone (getrusage's ru_maxrss
    also counts what the parent held when it forked us, so a child of a big process would
    report the parent's peak). Elsewhere: getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process in MiB (`peak_rss_mb`), plus the peak memory
    torch allocated on the current CUDA device (`peak_cuda_mb`) when CUDA is in use.

    >>> peak_memory()["peak_rss_mb"] > 0
    True
    """
    out = {"peak_rss_mb": round(_peak_rss_bytes() / 2**20, 1)}
    torch = sys.modules.get("torch")   # only if the stage already imported it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def log_peak_memory(run: Any, step: int | None = None) -> dict[str, Any]:
    """Append the peak memory to the run's `metrics.jsonl` (a `RunDir`) and return the record."""
    record: dict[str, Any] = {"step": step} if step is not None else {}
    record.update(peak_memory())
    run.log_metrics(record)
    return record
