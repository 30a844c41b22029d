"""What the SFT and preference stages share beyond `common.py`: the `tasks:` block (train on and
score the embedded tasks) and reading a stage's data (files through `tunesmith.data.prepare`, or
rows generated from the embedded tasks).

Example:
    >>> TasksSection(names=["add", "upper"], train_rows=500).eval_rows
    200
"""
from __future__ import annotations

import json
from typing import Any, Callable, Literal

from pydantic import Field

from ..core.config import Section
from ..core.errors import UserError
from ..core.rundir import RunDir, atomic_write_text
from ..data import DataPrepConfig, prepare
from . import toy_tasks as task_lib

TaskName = Literal["add", "reverse", "sort", "upper", "brackets"]
RowForm = Literal["instruction", "preference", "kto"]
_GENERATORS: dict[str, Callable[..., list[dict]]] = {
    "instruction": task_lib.instruction_rows, "preference": task_lib.preference_rows, "kto": task_lib.kto_rows}
_KINDS = {"instruction": ("conversational", "prompt_completion"), "preference": ("preference",),
          "kto": ("unpaired_preference", "preference")}


class TasksSection(Section):
    """The embedded tasks (tunesmith.alignment.toy_tasks): training rows when `data.inputs` is empty,
    and held-out exact-match accuracy before and after training."""

    names: list[TaskName] = Field(default_factory=list, description=(
        "embedded tasks to train on (when data.inputs is empty) and to evaluate: add, reverse, sort, upper, brackets"))
    train_rows: int = Field(2000, ge=1, description="training rows generated from the tasks (data.inputs empty)")
    eval_rows: int = Field(200, ge=1, description="held-out rows scored by exact match (never in training data)")
    seed: int = Field(0, description="seed for generating task rows")
    max_new_tokens: int = Field(8, ge=1, description="greedy tokens generated per held-out prompt")


def stage_data(data: DataPrepConfig, task_cfg: TasksSection, run: RunDir, tokenizer: Any, form: RowForm) -> Any:
    """The stage's prepared splits (a DatasetDict with `train`, maybe `validation`). With no
    `data.inputs`, rows of `form` are generated from `tasks.names` into `run/task_data/train.jsonl`
    and read from there (so they go through the same validation as user files). The data kind must
    fit the stage: a preference stage given instruction rows is a UserError naming the file."""
    if not data.inputs:
        if not task_cfg.names:
            raise UserError("no training data", field="data.inputs",
                            fix="give data.inputs (e.g. --data.inputs '[{path: train.jsonl}]') or tasks.names "
                                "(e.g. --tasks.names '[add, upper]')")
        rows = _GENERATORS[form](task_cfg.names, task_cfg.train_rows, seed=task_cfg.seed)
        path = run.path / "task_data" / "train.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
        # task items are distinct by construction; text dedup would fold "FOX"/"fox" pairs together
        data = DataPrepConfig.model_validate({**data.model_dump(), "inputs": [{"path": str(path)}],
                                              "dedup": {"exact": False, "near": False}})
    prepared = prepare(data, run_dir=run, tokenizer=tokenizer)
    kind = prepared.card["kind"]
    if kind not in _KINDS[form]:
        want = {"instruction": "instruction or chat rows (messages, prompt/completion, alpaca)",
                "preference": "preference pairs (prompt, chosen, rejected)",
                "kto": "KTO rows (prompt, completion, label) or preference pairs"}[form]
        raise UserError(f"this stage trains on {want}, but the data is {kind}", file=data.inputs[0].path,
                        field="data.format", fix=f"give {want}")
    return prepared.dataset


def heldout_rows(task_cfg: TasksSection) -> list[dict]:
    """The held-out instruction rows scored by exact match (empty when no tasks are named)."""
    if not task_cfg.names:
        return []
    return task_lib.instruction_rows(task_cfg.names, task_cfg.eval_rows, seed=task_cfg.seed + 1, split="heldout")


def task_scores(model: Any, tokenizer: Any, task_cfg: TasksSection, prefix: str) -> dict[str, float]:
    """On the held-out rows ({} without tasks): `{prefix}exact_match` and `{prefix}exact_match/<task>`
    (greedy answers), and `{prefix}answer_logprob`, the mean summed log-probability of the reference
    answer and its end-of-turn after the prompt (teacher-forced: graded, where exact match on a few
    dozen rows moves in steps of several percent)."""
    from .pairs import completion_logprobs  # pairs imports this module

    rows = heldout_rows(task_cfg)
    if not rows:
        return {}
    report = task_lib.exact_match_report(model, tokenizer, rows, task_cfg.max_new_tokens)
    out = {f"{prefix}exact_match": round(report["accuracy"], 4)}
    out.update({f"{prefix}exact_match/{t}": round(v, 4) for t, v in report["by_task"].items()})
    logps = completion_logprobs(model, tokenizer, [r["messages"][:-1] for r in rows],
                                [r["messages"][-1:] for r in rows])
    out[f"{prefix}answer_logprob"] = round(sum(logps) / len(logps), 4)
    return out
