"""Checkpoint completeness: a checkpoint counts only once its marker file is written, after
every other file of it, so a checkpoint half-written when a run died is never resumed."""
from __future__ import annotations

import os
from pathlib import Path

from transformers import TrainerCallback

MARKER = "CHECKPOINT_COMPLETE"


def _step(p: Path) -> int:
    try:
        return int(p.name.rsplit("-", 1)[-1])
    except ValueError:
        return -1


def last_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest `checkpoint-N` folder that carries the completion marker."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / MARKER).exists() and _step(p) >= 0]
    return max(done, key=_step, default=None)


class MarkComplete(TrainerCallback):
    """Writes the marker after the Trainer has saved (and fsynced) a checkpoint."""

    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                for f in ckpt.iterdir():
                    if f.is_file():
                        with open(f, "rb") as fh:
                            os.fsync(fh.fileno())
                (ckpt / MARKER).write_text(str(state.global_step))
