"""Reward-model training on preference pairs: a sequence-classification head (one output) on
the base model, trained with LoRA/QLoRA or fully through TRL's `RewardTrainer` (Bradley-Terry
loss), reporting pairwise accuracy on held-out pairs before and after training.

    import tunesmith as ts
    result = ts.reward(model={"path": "runs/sft/model"},
                       data={"inputs": [{"path": "pairs.jsonl"}], "split": {"validation": 0.1}})
    print(result.metrics["eval_accuracy"])
"""
from __future__ import annotations

from types import SimpleNamespace

from pydantic import Field
from ..adapters import AdapterConfig
from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.result import StageResult
from ..core.rundir import RunDir
from ..core.train_config import RunSection, TrainSection
from ..core.trainer_args import training_kwargs
from ..data import DataPrepConfig
from . import toy_tasks as task_lib
from ..lifecycle import Training, run_stage
from .common import ModelSection, load_policy
from .stage_data import TasksSection, stage_data
from ..hub.config import PushConfig


class RewardSection(Section):
    max_length: int | None = Field(
        512, ge=8, description="pairs whose chosen or rejected side is longer (tokens) are left out "
        "(counted in results.json); null keeps every pair")
    center_rewards_coefficient: float | None = Field(
        None, ge=0, description="push the mean reward toward 0 with this weight (null: off)")


class RewardConfig(Section):
    """A reward-model training run. Example:

    >>> cfg = coerce(RewardConfig, {"model": {"path": "runs/sft/model"}})
    >>> cfg.adapter.task
    'seq_cls'
    """

    model: ModelSection = Field(description="the base model (causal-LM folder); a one-output head is added")
    adapter: AdapterConfig = Field(default_factory=lambda: AdapterConfig(task="seq_cls"),
                                   description="adapter on the base; task must be seq_cls")
    data: DataPrepConfig = Field(default_factory=DataPrepConfig,
                                 description="preference pairs (prompt/chosen/rejected); "
                                 "split.validation gives held-out pairs")
    tasks: TasksSection = Field(default_factory=TasksSection, description=(
        "embedded tasks: training pairs when data.inputs is empty, and held-out pairs when the data "
        "has no validation split"))
    reward: RewardSection = Field(default_factory=RewardSection, description="reward-model options")
    train: TrainSection = Field(default_factory=lambda: TrainSection(lr=1e-4, max_steps=100),
                                description="optimisation")
    run: RunSection = Field(default_factory=RunSection, description="run directory")
    push_to_hub: PushConfig | None = Field(None, description="push the result to the Hub at the end: {repo: user/name, ...}")


def reward(config: RewardConfig | dict | str | None = None, **sections) -> StageResult:
    """Train a reward model on preference pairs; returns the run folder, the saved model (PEFT
    adapter with its score head, or a full model) and metrics including `eval_accuracy`
    (share of held-out pairs where r(chosen) > r(rejected)) and `initial_eval_accuracy`.

    result = reward("recipes/reward.yaml")
    """
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from .preference import GROUPED_ARGS, group_by_length

    cfg = _with_score_head(coerce(RewardConfig, config, **sections))

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        model, tok = load_policy(cfg.model, cfg.adapter, num_labels=1,
                                  gradient_checkpointing=cfg.train.gradient_checkpointing is True)
        data = _preference_data(cfg, run, tok)
        if not data.get("validation"):
            raise UserError("no held-out pairs to measure pairwise accuracy on", field="data.split.validation",
                            fix="set data.split.validation (e.g. 0.1) or name embedded tasks in tasks.names")
        return SimpleNamespace(model=model, tok=tok, data=data)

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        args = TRLRewardConfig(**training_kwargs(cfg.train, run, dtype, has_eval=True),
                               max_length=cfg.reward.max_length, disable_dropout=True,
                               center_rewards_coefficient=cfg.reward.center_rewards_coefficient,
                               **GROUPED_ARGS, remove_unused_columns=False)
        trainer = RewardTrainer(model=x.model, args=args, train_dataset=x.data["train"],
                                eval_dataset=x.data["validation"], processing_class=x.tok)
        group_by_length(trainer)  # chosen and rejected are padded together: pairs drawn grouped by length

        def before() -> dict:
            out = _dropped(x.data, trainer)
            if not resuming:
                out["initial_eval_accuracy"] = trainer.evaluate()["eval_accuracy"]
            return out

        def after(_model) -> dict:
            final = trainer.evaluate()
            return {k: final[k] for k in ("eval_accuracy", "eval_margin", "eval_loss")}
        return Training(trainer, before, after)

    return run_stage("reward", cfg, load, build)


def _with_score_head(cfg: RewardConfig) -> RewardConfig:
    """An `adapter:` block that leaves `task` unset means seq_cls here; causal_lm is refused."""
    if "task" not in cfg.adapter.model_fields_set:
        return cfg.model_copy(update={"adapter": cfg.adapter.model_copy(update={"task": "seq_cls"})})
    if cfg.adapter.task != "seq_cls":
        raise UserError("a reward model needs a score head, but adapter.task is causal_lm",
                        field="adapter.task", fix="set adapter.task: seq_cls (or leave it unset)")
    return cfg


def _preference_data(cfg: RewardConfig, run, tok) -> dict:
    """{"train": Dataset, "validation": Dataset | None}: the data's own splits; without a
    validation split, held-out pairs of the embedded tasks (never in the training items)."""
    from datasets import Dataset

    splits = dict(stage_data(cfg.data, cfg.tasks, run, tok, "preference"))
    if "validation" not in splits and cfg.tasks.names:
        rows = task_lib.preference_rows(cfg.tasks.names, cfg.tasks.eval_rows, seed=cfg.tasks.seed + 1,
                                        split="heldout")
        splits["validation"] = Dataset.from_list(rows)
    return splits


def _dropped(data: dict, trainer) -> dict:
    """Pairs the trainer left out for exceeding max_length, per split (never dropped silently)."""
    return {"train_pairs": len(trainer.train_dataset),
            "train_pairs_too_long": len(data["train"]) - len(trainer.train_dataset),
            "eval_pairs": len(trainer.eval_dataset),
            "eval_pairs_too_long": len(data["validation"]) - len(trainer.eval_dataset)}
