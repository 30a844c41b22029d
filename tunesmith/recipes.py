"""`tunesmith init STAGE`: a commented starter recipe, generated from the stage's config class
(so it always lists every key with the default the stage really uses, and its help text)."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .core.config import REQUIRED, config_keys
from .core.errors import UserError
from .stages import STAGES, load

DATA_CONFIG = "tunesmith.data:DataPrepConfig"
STARTERS = [*STAGES, "data", "run"]  # what `tunesmith init` writes
RUN_LINES = {"eval": "tunesmith eval glue|superglue this.yaml", "data": "tunesmith data prepare this.yaml"}

# required keys get a value that works with the rest of a fresh project
PLACEHOLDERS = {"path": "runs/base/model", "repo": "your-name/your-model"}

STARTER_PIPELINE = """\
# tunesmith pipeline: each stage's model feeds the next; re-run to resume after an interruption.
# Runs offline on CPU in about two minutes (this is `tunesmith demo`): a nano model pretrained on
# the shipped corpus, instruction-tuned on the embedded `add` task, then preference-aligned on
# embedded `brackets`/`upper` pairs. Full fine-tuning: the nano base has never seen the chat
# template's tokens nor the bare digit tokens of the answers; a LoRA adapter trains the chat
# tokens' rows (adapter.trainable_tokens: auto) but leaves the digits' rows frozen.
run:
  dir: runs/pipeline
stages:
  - stage: pretrain
    name: base
    model: {family: llama, size: nano}
    train: {max_steps: 400}
  - stage: sft
    adapter: {method: full}
    tasks: {names: [add], train_rows: 80, eval_rows: 26}
    sft: {max_length: 64, batching: padding}
    train: {max_steps: 600, batch_size: 16, lr: 0.003, warmup_steps: 10, save_steps: 200}
  - stage: dpo
    adapter: {method: full}
    tasks: {names: [brackets, upper], train_rows: 160, eval_rows: 40}
    dpo: {max_length: 64, beta: 0.1}
    train: {max_steps: 100, batch_size: 16, lr: 0.001, warmup_steps: 10, save_steps: 50}
"""


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and "e" in repr(value) and "." not in repr(value):
        return repr(value).replace("e", ".0e")  # YAML reads 1e-05 as text, 1.0e-05 as a number
    return json.dumps(value) if isinstance(value, (str, list, dict)) else str(value)


def _lines(cls: type[BaseModel]) -> list[str]:
    """One line per key, indented under its block, with the default the stage uses."""
    lines = []
    for k in config_keys(cls):
        pad, name = "  " * k.depth, k.key.rsplit(".", 1)[-1]
        help_ = f"  # {k.help}" if k.help else ""
        if k.section:
            lines.append(f"{pad}{name}:{help_}")
        elif k.default is REQUIRED:
            lines.append(f"{pad}{name}: {_yaml_value(PLACEHOLDERS.get(name, ''))}  # REQUIRED."
                         f"{(' ' + k.help) if k.help else ''}")
        else:
            lines.append(f"{pad}{name}: {_yaml_value(k.default)}{help_}")
    return lines


def starter_recipe(stage: str) -> str:
    """The text of a starter recipe for `stage` (a stage of the table, `data`, or `run`)."""
    if stage == "run":
        return STARTER_PIPELINE
    if stage not in STARTERS:
        raise UserError(f'no starter recipe for "{stage}"', fix=f"choose one of {', '.join(STARTERS)}")
    cls = load(DATA_CONFIG) if stage == "data" else STAGES[stage].config_class()
    head = [f"# tunesmith {stage} recipe: every key with its default. Delete what you don't change.",
            f"# Run: {RUN_LINES.get(stage, f'tunesmith {stage} this.yaml')} [--section.key VALUE ...]"]
    return "\n".join(head + _lines(cls)) + "\n"
