"""Trainer callbacks every stage uses: metrics.jsonl in the run directory."""
from __future__ import annotations

import time

from transformers import TrainerCallback

from .rundir import RunDir

RENAME = {"learning_rate": "lr"}


class MetricsLogger(TrainerCallback):
    """Writes one line per Trainer log event to `metrics.jsonl`: step, loss, lr, grad_norm,
    tokens/s (from `tokens_per_step`), eval metrics. Main process only."""

    def __init__(self, run: RunDir, tokens_per_step: int):
        self.run, self.tokens_per_step = run, tokens_per_step
        self._t = time.perf_counter()
        self._step = 0

    def on_train_begin(self, args, state, control, **kw):
        self._t, self._step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for k, v in logs.items():
            record[RENAME.get(k, k)] = v
        if "loss" in logs and state.global_step > self._step:
            now = time.perf_counter()
            steps = state.global_step - self._step
            record["tokens_per_s"] = round(steps * self.tokens_per_step / max(now - self._t, 1e-9), 1)
            self._t, self._step = now, state.global_step
        self.run.log_metrics(record)
