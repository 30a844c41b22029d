"""Console callbacks: one progress bar with the latest metrics, no log dicts on stdout."""
import pytest
import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerState, TrainingArguments

from tunesmith.core.callbacks import ProgressBar, console_progress


def _trainer(tmp_path, disable_tqdm):
    args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=disable_tqdm, report_to=[], use_cpu=True)
    return Trainer(model=torch.nn.Linear(2, 2), args=args)


def _kinds(trainer):
    return {type(cb) for cb in trainer.callback_handler.callbacks}


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_console_progress_keeps_one_bar_and_never_the_printer(tmp_path, disable_tqdm):
    kinds = _kinds(console_progress(_trainer(tmp_path, disable_tqdm)))
    assert PrinterCallback not in kinds and ProgressCallback not in kinds
    assert (ProgressBar in kinds) == (not disable_tqdm)  # disable_tqdm: no bar at all


def test_progress_bar_shows_metrics_as_postfix_and_prints_nothing(capsys):
    bar, state = ProgressBar(), TrainerState()
    state.max_steps = 4
    bar.on_log(None, state, None, logs={"loss": 1.0})  # before training: no bar yet, no error
    bar.on_train_begin(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 0.123456, "learning_rate": 1e-3, "epoch": 1.0, "note": "x"})
    assert bar.training_bar.postfix == "loss=0.1235, learning_rate=0.001"
    bar.on_train_end(None, state, None)
    assert capsys.readouterr().out == ""


def test_all_finite_finds_nan_and_inf_and_is_not_fooled_by_an_overflowing_norm():
    from tunesmith.core.callbacks import all_finite

    grads = [torch.randn(8, 8), torch.randn(8)]
    assert all_finite(grads)
    for bad in (float("nan"), float("inf"), float("-inf")):
        broken = [g.clone() for g in grads]
        broken[1][3] = bad
        assert not all_finite(broken)
    huge = [torch.full((4,), 3e38)]  # finite, but its norm overflows to inf
    assert torch.isinf(torch.nn.utils.get_total_norm(huge)) and all_finite(huge)
