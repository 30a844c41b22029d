"""Run reports: loss / learning-rate / throughput curves, eval tables, memory, config and data
card as `report.md` and a self-contained `report.html` in the run directory.

    from tunesmith.report import write_report
    write_report("runs/nano").html   # runs/nano/report.html
"""
from .memory import log_peak_memory, peak_memory
from .runinfo import RunInfo, read_run
from .tensorboard import report_callbacks
from .writer import ReportResult, write_report

__all__ = ["write_report", "ReportResult", "read_run", "RunInfo", "peak_memory", "log_peak_memory",
           "report_callbacks"]
