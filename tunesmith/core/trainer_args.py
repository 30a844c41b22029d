"""Our TrainSection -> keyword arguments of `transformers.TrainingArguments` (and of TRL's
configs, which subclass it). One mapping for every stage."""
from __future__ import annotations

import torch

from .distributed import world_size
from .errors import UserError
from .rundir import RunDir
from .train_config import EpochTrainSection, TrainSection

SCHEDULES = {"cosine": "cosine_with_min_lr", "linear": "linear", "constant": "constant_with_warmup"}


def batch_layout(train: TrainSection) -> tuple[int, int]:
    """(per-device batch, gradient-accumulation steps) giving the config's global batch
    whatever the number of processes."""
    world = world_size()
    per_device = train.micro_batch_size or max(1, train.batch_size // world)
    if train.batch_size % (per_device * world):
        raise UserError(f"batch_size {train.batch_size} is not a multiple of micro_batch_size x processes "
                        f"({per_device} x {world})", field="train.batch_size")
    return per_device, train.batch_size // (per_device * world)


def training_kwargs(train: TrainSection, run: RunDir | str, dtype: str, has_eval: bool) -> dict:
    """The arguments every stage's Trainer (or TRL config) gets; checkpoints go to the run's
    `checkpoints/` (or to `run` when it is a plain folder). An `EpochTrainSection` trains by epochs."""
    per_device, accum = batch_layout(train)
    extra = {"num_train_epochs": train.epochs} if isinstance(train, EpochTrainSection) else {}
    return dict(
        output_dir=str(run.checkpoints if isinstance(run, RunDir) else run), **extra, max_steps=train.max_steps, per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device, gradient_accumulation_steps=accum, learning_rate=train.lr,
        lr_scheduler_type=SCHEDULES[train.schedule],
        lr_scheduler_kwargs={"min_lr_rate": 0.1} if train.schedule == "cosine" else {},
        warmup_steps=train.warmup_steps, weight_decay=train.weight_decay, max_grad_norm=train.max_grad_norm,
        logging_steps=train.logging_steps, eval_strategy="steps" if has_eval else "no",
        eval_steps=train.eval_steps, save_strategy="steps", save_steps=train.save_steps,
        save_total_limit=train.save_total_limit, seed=train.seed, data_seed=train.seed, report_to=[],
        bf16=dtype == "bf16", use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        activation_checkpointing=train.gradient_checkpointing is True,  # auto: decided after loading
    )
