"""`write_report(run_dir)`: report.md + report.html (+ plots/*.png) written into the run directory.

result = write_report("runs/nano")
result.html, [p.name for p in result.plot_files]
# -> (PosixPath('runs/nano/report.html'), ['loss.png', 'lr.png', 'grad_norm.png', 'throughput.png'])
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.rundir import atomic_dir, atomic_write_text
from .plots import Plot, plot_curves
from .render import data_uri, render_html, render_markdown
from .runinfo import RunInfo, read_run

PLOTS_DIR = "plots"
REPORT_MD, REPORT_HTML = "report.md", "report.html"


@dataclass
class ReportResult:
    """Where the report went, and the figures (with the exact arrays they plot)."""

    markdown: Path
    html: Path
    plots: dict[str, list[Plot]] = field(default_factory=dict)   # stage name ("" = the run) -> figures
    info: RunInfo | None = None

    @property
    def plot_files(self) -> list[Path]:
        return [p.path for figs in self.plots.values() for p in figs if p.path is not None]

    @property
    def paths(self) -> list[Path]:
        return [self.markdown, self.html, *self.plot_files]


def write_report(run_dir: str | os.PathLike) -> ReportResult:
    """Read the run directory (a pipeline folder: every stage too), draw its curves and write
    `report.md` (plots as relative PNG links) and `report.html` (self-contained: plots embedded)."""
    run_path = Path(run_dir)
    info = read_run(run_path)
    final_plots = run_path / PLOTS_DIR
    plots: dict[str, list[Plot]] = {}
    with atomic_dir(final_plots) as tmp:
        plots[""] = plot_curves(info.metrics, tmp)
        for stage in info.stages:
            plots[stage.name] = plot_curves(stage.metrics, tmp, prefix=f"{stage.name}-")
        markdown = render_markdown(info, plots, image_ref=lambda p: f"{PLOTS_DIR}/{p.path.name}")
        page = render_html(f"Run report: {info.name}", render_markdown(info, plots, image_ref=data_uri))
    for figs in plots.values():           # the files now live in the final folder
        for p in figs:
            p.path = final_plots / p.path.name
    if not any(plots.values()):
        final_plots.rmdir()
    atomic_write_text(run_path / REPORT_MD, markdown)
    atomic_write_text(run_path / REPORT_HTML, page)
    return ReportResult(markdown=run_path / REPORT_MD, html=run_path / REPORT_HTML, plots=plots, info=info)
