"""TensorBoard logging for a stage's Trainer, into `RUN_DIR/tensorboard/`.

A stage passes its `report_to` list here and adds the callbacks it gets back to the
Trainer (keeping `TrainingArguments.report_to=[]`, so the Trainer adds no logger of its own
that would write under the checkpoints folder). Needs the `tensorboard` package.

trainer = Trainer(..., callbacks=[*callbacks, *report_callbacks(["tensorboard"], run.path)])
# then: tensorboard --logdir runs/nano/tensorboard
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

from ..core.errors import UserError

ReportTarget = Literal["tensorboard"]
TENSORBOARD_DIR = "tensorboard"


def report_callbacks(report_to: list[str], run_dir: str | os.PathLike,
                     field: str = "train.report_to") -> list:
    """Trainer callbacks for the requested loggers; a missing package is a UserError naming
    the pip package to install.

    >>> report_callbacks([], "runs/x")
    []
    """
    callbacks = []
    for target in dict.fromkeys(report_to):
        if target != "tensorboard":
            raise UserError(f'unknown logger "{target}"', field=field, fix="supported: tensorboard")
        if importlib.util.find_spec("tensorboard") is None:
            raise UserError("report_to tensorboard needs the tensorboard package", field=field,
                            fix="pip install tensorboard")
        from transformers.integrations import TensorBoardCallback

        callback = TensorBoardCallback()
        # its writer is (re)opened lazily in logging_dir, also for evaluations after training
        callback.logging_dir = str(Path(run_dir) / TENSORBOARD_DIR)
        callbacks.append(callback)
    return callbacks
