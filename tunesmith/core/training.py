"""Running a Trainer with tunesmith's failure handling (every stage calls this)."""
from __future__ import annotations

import errno
from pathlib import Path

from .checkpoints import last_checkpoint
from .errors import TrainingStopped


def train(trainer, resume_from: str | Path | None = None):
    """`trainer.train(...)`, turning a full disk into a one-line TrainingStopped that names
    the last complete checkpoint (a checkpoint interrupted mid-write has no completion
    marker and is never resumed from)."""
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
    """`trainer.evaluate()` before `train()`, without breaking distributed training.

    transformers 5 prepares the model in evaluation mode on a first `evaluate()`, which
    marks it as prepared; `train()` then skips wrapping it in DistributedDataParallel and
    the processes silently train apart (no gradient all-reduce). Undo that preparation."""
    metrics = trainer.evaluate()
    trainer.accelerator._models.clear()
    trainer.model.__dict__.pop("_is_accelerate_prepared", None)
    trainer.model_wrapped = trainer.model
    return metrics
