"""Config sections every training stage shares: the optimisation loop and the run folder."""
from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .config import Section


class TrainSection(Section):
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate schedule")
    warmup_steps: int = Field(20, ge=0, description="linear warm-up steps")
    max_steps: int = Field(200, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="global batch size (sequences per optimizer step)")
    micro_batch_size: int | None = Field(
        None, ge=1, description="sequences per forward pass; gradient accumulation makes up the rest")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    dtype: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description=("auto: on CPU, bf16 autocast if a few timed forward+backward steps of the model "
                             "at its batch shape find it faster (memory counted; cached per machine), else "
                             "fp32; on GPU, bf16 where supported"))
    seed: int = Field(42, description="seed for init, data order and sampling")
    logging_steps: int = Field(10, ge=1, description="log metrics every N steps")
    eval_steps: int = Field(100, ge=1, description="validation loss every N steps")
    save_steps: int = Field(100, ge=1, description="checkpoint every N steps")
    save_total_limit: int = Field(2, ge=1, description="keep the last K checkpoints")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description=(
        "recompute activations in backward instead of keeping them (~1/3 more compute, most activation memory "
        "saved); auto: on when the activations one micro-batch keeps (measured) are at least 256 MiB and "
        "either outweigh the weights, gradients and optimizer state or do not fit beside them"))
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="live loggers besides metrics.jsonl, any of tensorboard (RUN_DIR/tensorboard), mlflow "
                    "(MLFLOW_TRACKING_URI, else a store in RUN_DIR), wandb (offline in RUN_DIR/wandb unless "
                    "WANDB_MODE/WANDB_API_KEY is set); mlflow/wandb also get the config, environment, final "
                    "metrics and report at the end (pip install tensorboard / mlflow / wandb)")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="NaN/inf loss or gradients: stop (keep the last good checkpoint) or skip the batch")


class EpochTrainSection(TrainSection):
    """The shared training section, trained by epochs (`max_steps: -1`): task fine-tuning
    (`tunesmith.transfer`, its defaults set in FinetuneConfig.train) and the GLUE protocol."""

    epochs: float = Field(3.0, gt=0, description="passes over the training data (used when max_steps is -1)")
    max_steps: int = Field(-1, ge=-1, description="stop after this many steps (-1: train `epochs` epochs)")
    warmup_steps: float = Field(0.06, ge=0, description="linear warm-up: steps, or a share of all steps when < 1")
    eval_batch_size: int = Field(64, ge=1, description="examples per evaluation batch")

    @model_validator(mode="before")
    @classmethod
    def _warmup_ratio(cls, data: Any) -> Any:
        """`warmup_ratio` (finetune's key before it shared the train section) is `warmup_steps` below 1."""
        if isinstance(data, dict) and "warmup_ratio" in data:
            data = dict(data)
            ratio = data.pop("warmup_ratio")
            data.setdefault("warmup_steps", ratio)
        return data


def no_parent_hops(value: str | None) -> str | None:
    """Refuse `..` in configured output paths: a recipe must not write outside where it says
    by accident (an absolute path is accepted: it is explicit)."""
    if value is not None and ".." in PurePath(value).parts:
        raise ValueError(f"'{value}' climbs out with '..'; give a path without '..' (absolute if you mean it)")
    return value


class RunSection(Section):
    dir: str | None = Field(None, description="run directory (default: runs/<stage>-<timestamp>)")
    resume: bool = Field(False, description="continue the run in `dir` from its last checkpoint")
    overwrite: bool = Field(False, description="allow writing into a non-empty run directory")
    sample_prompt: str = Field("Once upon a time", description="prompt for the text sample printed at the end")
    sample_tokens: int = Field(40, ge=0, description="tokens to generate for the sample")

    _dir_ok = field_validator("dir")(no_parent_hops)
