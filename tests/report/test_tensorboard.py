"""report_to tensorboard: event files in RUN_DIR/tensorboard holding the logged losses."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import Trainer, TrainingArguments

from tunesmith.core.errors import UserError
from tunesmith.pretraining.presets import build_model
from tunesmith.report.tensorboard import report_callbacks


def test_unknown_logger_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match='unknown logger "comet"') as e:
        report_callbacks(["comet"], tmp_path)
    assert 'field "train.report_to"' in str(e.value)
    assert report_callbacks([], tmp_path) == []


def test_missing_tensorboard_names_the_package(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a))
    with pytest.raises(UserError, match="pip install tensorboard"):
        report_callbacks(["tensorboard"], tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_trainer_losses_land_in_the_run_dir(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = build_model("llama", "nano", vocab=64, layers=1)
    ids = torch.randint(0, 64, (16, 12))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), max_steps=4, logging_steps=1,
                             per_device_train_batch_size=4, learning_rate=1e-2, report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=report_callbacks(["tensorboard"], tmp_path))
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == [1, 2, 3, 4]
    assert [s.value for s in scalars] == pytest.approx(logged, rel=1e-6)
    assert not (tmp_path / "checkpoints" / "runs").exists()
