"""Curves from metrics.jsonl as PNG files (matplotlib, Agg backend: no display needed).

`curves` groups the logged numbers into figures (loss, learning rate, gradient norm,
throughput, then any other metric that changes over steps); `plot_curves` draws them and
returns, for each figure, the exact arrays it plotted and where each point landed in the
image, so a test can check the picture against the log.

plots = plot_curves(read_metrics(Path("runs/nano/metrics.jsonl")), Path("runs/nano/plots"))
plots[0].title, plots[0].series["loss"][0][:3]
# -> ('Loss', [10, 20, 30])
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.0, 100
# keys that are bookkeeping, one-off summaries, or shown elsewhere in the report
NOT_CURVES = {"step", "epoch", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
              "eval_model_preparation_time", "train_runtime", "train_samples_per_second",
              "train_steps_per_second", "total_flos", "train_loss", "peak_rss_mb", "peak_cuda_mb",
              "skipped_nonfinite_batch", "score", "task", "num_tokens", "tokens"}
MAX_OTHER_FIGURES = 8
Series = tuple[list[float], list[float]]          # (steps, values)


@dataclass
class Plot:
    """One figure: its PNG, the arrays plotted and the pixel (column, row) of every point."""

    key: str
    title: str
    ylabel: str
    series: dict[str, Series]
    path: Path | None = None
    colors: dict[str, str] = field(default_factory=dict)
    pixels: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    size: tuple[int, int] = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))


def series(records: list[dict[str, Any]], key: str) -> Series:
    """(steps, values) of `key` over records that have a step; a step logged twice keeps its
    last value (a resumed run, or the final evaluation repeated after training)."""
    by_step: dict[float, float] = {}
    for r in records:
        v, step = r.get(key), r.get("step")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(step, (int, float)) \
                and math.isfinite(v):
            by_step[step] = float(v)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _keys(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                seen.setdefault(k, None)
    return list(seen)


def curves(records: list[dict[str, Any]]) -> list[Plot]:
    """The figures to draw (no drawing yet). A curve needs at least one point with a step;
    "other" metrics need two distinct values to be worth a figure."""
    keys = [k for k in _keys(records) if k not in NOT_CURVES]
    groups: list[tuple[str, str, str, list[str]]] = [
        ("loss", "Loss", "loss", [k for k in keys if k in ("loss", "eval_loss") or k.startswith("loss_head_")]),
        ("lr", "Learning rate", "learning rate", [k for k in keys if k in ("lr", "learning_rate")]),
        ("grad_norm", "Gradient norm", "gradient norm", [k for k in keys if k == "grad_norm"]),
        ("throughput", "Throughput", "tokens / s", [k for k in keys if k == "tokens_per_s"]),
    ]
    used = {k for *_, ks in groups for k in ks}
    other = [k for k in keys if k not in used and len(set(series(records, k)[1])) > 1]
    groups += [(re.sub(r"[^A-Za-z0-9_.-]+", "_", k), k, k, [k]) for k in other[:MAX_OTHER_FIGURES]]
    plots = []
    for key, title, ylabel, names in groups:
        data = {n: series(records, n) for n in names}
        data = {n: s for n, s in data.items() if s[0]}
        if data:
            plots.append(Plot(key=key, title=title, ylabel=ylabel, series=data))
    return plots


def draw(plot: Plot, path: Path) -> Plot:
    """Draw `plot` to `path` (PNG, WIDTH_IN x HEIGHT_IN at DPI) and fill in colors and pixels."""
    import matplotlib  # here, not at import: ~25 MB a training process never needs before its report

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    try:
        palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (name, (x, y)) in enumerate(plot.series.items()):
            color = matplotlib.colors.to_hex(palette[i % len(palette)])
            ax.plot(x, y, color=color, linewidth=1.8, marker="o" if len(x) <= 60 else None,
                    markersize=3.5, label=name)
            plot.colors[name] = color
        ax.set_title(plot.title)
        ax.set_xlabel("step")
        ax.set_ylabel(plot.ylabel)
        ax.grid(True, color="#e5e5e5", linewidth=0.8)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
        if len(plot.series) > 1:
            ax.legend(loc="best", frameon=False)
        fig.tight_layout()
        fig.canvas.draw()
        height = fig.canvas.get_width_height()[1]
        for name, (x, y) in plot.series.items():
            points = ax.transData.transform(list(zip(x, y)))
            plot.pixels[name] = [(int(round(px)), int(round(height - py))) for px, py in points]
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
        plot.size = fig.canvas.get_width_height()
        plot.path = path
    finally:
        plt.close(fig)
    return plot


def plot_curves(records: list[dict[str, Any]], out_dir: Path, prefix: str = "") -> list[Plot]:
    """Draw every figure `curves` finds into `out_dir/<prefix><key>.png`."""
    return [draw(p, out_dir / f"{prefix}{p.key}.png") for p in curves(records)]
