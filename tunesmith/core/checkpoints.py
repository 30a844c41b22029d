"""Checkpoint completeness: a checkpoint counts only once its marker file is written, after
every other file of it, so a checkpoint half-written when a run died is never resumed.

What resume trusts. `--resume` (run.resume) loads the newest complete `checkpoints/checkpoint-N/`
of the run's own folder: files this run wrote there, as this user. Besides the weights
(safetensors) a Trainer checkpoint holds pickles - optimizer.pt, scheduler.pt, rng_state*.pth
(and scaler.pt under fp16) - which transformers 5.24 reads with
`torch.load(..., weights_only=True)` (`Trainer._load_rng_state`, `_load_optimizer_and_scheduler`,
`_load_from_checkpoint` for pytorch_model.bin; with torch >= 2.6, `check_torch_load_is_safe`):
the restricted unpickler builds tensors, containers and plain values and nothing else (the RNG
state also allows numpy arrays and dtypes), and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD does not override
an explicit weights_only=True. training_args.bin (a full pickle of TrainingArguments) is written
but never read on resume. Two setups load a full pickle: FSDP with SHARDED_STATE_DICT (the
shipped fsdp_full_shard config) restores through torch.distributed.checkpoint, whose
FileSystemReader.read_metadata `pickle.load`s the checkpoint's `.metadata`; DeepSpeed restores
through its own checkpoint code. There a checkpoint is as trusted as code. So: resume only run
folders that no one else can write into.
"""
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
    """Writes the marker after the Trainer has saved (and fsynced) a checkpoint: with several
    processes only once every process has written its part (FSDP's sharded model and optimizer
    folders are written by all of them, each its own rng_state_<rank>.pth), so the marker
    stands for the whole checkpoint. When training starts, environment.json's "distributed"
    record is re-read from the Trainer's accelerator; when it ends, a model sharded by FSDP is
    made whole again on every process (`distributed.consolidate`), so the stage saves a
    consolidated model."""

    def on_train_begin(self, args, state, control, **kw):
        if state.is_world_process_zero:
            from .rundir import refresh_distributed_record

            refresh_distributed_record(Path(args.output_dir).parent)

    def on_save(self, args, state, control, **kw):
        from .distributed import wait_for_everyone

        wait_for_everyone()  # every process has written its files of this checkpoint
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                for f in sorted(ckpt.rglob("*")):
                    if f.is_file():
                        with open(f, "rb") as fh:
                            os.fsync(fh.fileno())
                (ckpt / MARKER).write_text(str(state.global_step))

    def on_train_end(self, args, state, control, model=None, **kw):
        if model is not None:
            from .distributed import consolidate

            consolidate(model)
