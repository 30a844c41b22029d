"""Running a Trainer with tunesmith's failure handling (every stage calls this)."""
from __future__ import annotations

import errno
import json
import math
from pathlib import Path

from .checkpoints import last_checkpoint
from .errors import TrainingStopped, UserError


def run_training(trainer, resume_from: str | Path | None = None):
    """`trainer.train(...)`, turning a full disk into a one-line TrainingStopped that names
    the last complete checkpoint (a checkpoint interrupted mid-write has no completion
    marker and is never resumed from).

    A checkpoint already at `max_steps` (the run died after its last save) is loaded and not
    trained further: transformers would otherwise run one extra step past the end."""
    if resume_from and _finished(trainer, Path(resume_from)):
        return _load_finished(trainer, Path(resume_from))
    try:
        return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        good = last_checkpoint(trainer.args.output_dir)
        raise TrainingStopped(
            f"disk full while training at step {trainer.state.global_step} ({e.strerror}); "
            + (f"last complete checkpoint: {good}; free space, then resume with --resume" if good
               else "no complete checkpoint yet; free space and start again")) from None


def evaluate_before_training(trainer) -> dict:
    """`trainer.evaluate()` before `train()`, without breaking distributed training (see
    `compat.unprepare_after_evaluate`)."""
    from ..compat import unprepare_after_evaluate

    metrics = trainer.evaluate()
    unprepare_after_evaluate(trainer)
    return metrics


def _finished(trainer, ckpt: Path) -> bool:
    step = json.loads((ckpt / "trainer_state.json").read_text())["global_step"]
    if step > trainer.args.max_steps:
        raise UserError(f"{ckpt.name} is past train.max_steps={trainer.args.max_steps}",
                        fix=f"raise train.max_steps above {step} to continue, or start afresh with run.overwrite=true")
    return step == trainer.args.max_steps


def _load_finished(trainer, ckpt: Path):
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    from ..compat import load_checkpoint_weights

    load_checkpoint_weights(trainer, str(ckpt))
    trainer.state = TrainerState.load_from_json(str(ckpt / "trainer_state.json"))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return TrainOutput(trainer.state.global_step, losses[-1] if losses else math.nan, {})
