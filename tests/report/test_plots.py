"""The PNG curves: grouping of logged keys, and images that really show metrics.jsonl."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tunesmith.report.plots import DPI, HEIGHT_IN, WIDTH_IN, curves, plot_curves, series


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def _near(img: np.ndarray, col: int, row: int, color: np.ndarray, radius: int = 2, tol: float = 40) -> bool:
    patch = img[max(0, row - radius):row + radius + 1, max(0, col - radius):col + radius + 1, :3].astype(float)
    return bool((np.abs(patch - color).sum(axis=-1) < tol).any())


def test_series_keeps_last_value_per_step_and_skips_records_without_step():
    records = [{"step": 20, "loss": 2.0}, {"step": 10, "loss": 3.0}, {"task": "rte", "loss": 9.0},
               {"step": 20, "loss": 1.5}, {"step": 30, "loss": float("nan")}, {"step": 30, "loss": True}]
    assert series(records, "loss") == ([10, 20], [3.0, 1.5])


def test_curves_group_loss_heads_and_drop_bookkeeping_and_constant_metrics():
    records = [{"step": s, "loss": 5 - s, "eval_loss": 6 - s, "loss_head_1": 7 - s, "lr": 1e-3 * s,
                "epoch": s / 10, "eval_runtime": 0.5 + s, "rewards/margins": s * 0.1, "constant": 1.0}
               for s in (1, 2, 3)]
    plots = {p.key: p for p in curves(records)}
    assert list(plots) == ["loss", "lr", "rewards_margins"]
    assert sorted(plots["loss"].series) == ["eval_loss", "loss", "loss_head_1"]
    assert plots["rewards_margins"].series["rewards/margins"] == ([1, 2, 3], [0.1, 0.2, 0.30000000000000004])


def test_pngs_show_the_logged_curves(pipeline_dir, tmp_path):
    metrics_file = pipeline_dir / "1-pretrain" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    plots = plot_curves(records, tmp_path)
    assert [p.key for p in plots] == ["loss", "lr", "grad_norm", "throughput"]

    # the plotted arrays are exactly the logged numbers (independently re-read here)
    logged_loss = [(r["step"], r["loss"]) for r in records if "loss" in r]
    loss = plots[0].series["loss"]
    assert list(zip(*loss)) == logged_loss and len(logged_loss) == 5
    eval_steps = sorted({r["step"] for r in records if "eval_loss" in r})
    assert plots[0].series["eval_loss"][0] == eval_steps == [0, 5, 10]
    assert plots[1].series["lr"][1] == [r["lr"] for r in records if "lr" in r]

    for plot in plots:
        with Image.open(plot.path) as im:
            assert im.format == "PNG"
            assert im.size == plot.size == (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))
            img = np.asarray(im.convert("RGB"))
        later = list(plot.series)            # a point may be covered by a series drawn after it
        for i, name in enumerate(plot.series):
            colors = [_rgb(plot.colors[n]) for n in later[i:]]
            for col, row in plot.pixels[name]:
                assert any(_near(img, col, row, c) for c in colors), (plot.key, name, col, row)
        # and the curve is not everywhere: the top-left corner of the image is background
        assert (img[:5, :5] == 255).all()


def test_pixels_follow_the_values(tmp_path):
    """A higher value is drawn higher in the image (rows count down from the top)."""
    records = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 3.0}, {"step": 3, "loss": 2.0}]
    (plot,) = plot_curves(records, tmp_path)
    rows = [row for _, row in plot.pixels["loss"]]
    cols = [col for col, _ in plot.pixels["loss"]]
    assert rows[1] < rows[2] < rows[0] and cols[0] < cols[1] < cols[2]
