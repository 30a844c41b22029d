"""TensorBoard logging for a stage's Trainer, into `RUN_DIR/tensorboard/`; the loggers themselves
(TensorBoard, MLflow, Weights & Biases) live in `tunesmith.report.trackers`.

trainer = Trainer(..., callbacks=[*callbacks, *report_callbacks(["tensorboard"], run.path)])
# then: tensorboard --logdir runs/nano/tensorboard
"""
from __future__ import annotations

from .trackers import SUPPORTED, TENSORBOARD_DIR, ReportTarget, report_callbacks

__all__ = ["report_callbacks", "ReportTarget", "TENSORBOARD_DIR", "SUPPORTED"]
