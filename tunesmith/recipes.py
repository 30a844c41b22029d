"""`tunesmith init STAGE`: a commented starter recipe, generated from the stage's config class
(so it always lists every key with its real default and help text)."""
from __future__ import annotations

import json
from typing import Any, get_origin

from pydantic import BaseModel

from .core.errors import UserError

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
    return json.dumps(value) if isinstance(value, (str, list, dict)) else str(value).lower() \
        if isinstance(value, bool) else str(value)


def _section_lines(cls: type[BaseModel], indent: int) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for name, field in cls.model_fields.items():
        ann = field.annotation
        sub = next((c for c in (ann, *getattr(ann, "__args__", ())) if isinstance(c, type)
                    and issubclass(c, BaseModel)), None)
        help_ = f"  # {field.description}" if field.description else ""
        if sub is not None and get_origin(ann) is None and (field.default_factory is not None or field.is_required()):
            lines.append(f"{pad}{name}:{help_}")
            lines += _section_lines(sub, indent + 1)
        elif field.is_required():
            lines.append(f"{pad}{name}: {_yaml_value(PLACEHOLDERS.get(name, ''))}  # REQUIRED."
                         f"{(' ' + field.description) if field.description else ''}")
        else:
            lines.append(f"{pad}{name}: {_yaml_value(field.get_default(call_default_factory=True))}{help_}")
    return lines


def starter_recipe(stage: str) -> str:
    """The text of a starter recipe for `stage` (a training stage, `eval`, `data`, or `run`)."""
    from .cli import STAGES, _load

    if stage == "run":
        return STARTER_PIPELINE
    refs = {**{k: v[0] for k, v in STAGES.items()}, "eval": "tunesmith.eval:EvalConfig",
            "data": "tunesmith.data:DataPrepConfig"}
    if stage not in refs:
        raise UserError(f'no starter recipe for "{stage}"', fix=f"choose one of {', '.join([*refs, 'run'])}")
    cls = _load(refs[stage])
    head = [f"# tunesmith {stage} recipe: every key with its default. Delete what you don't change.",
            f"# Run: tunesmith {stage} this.yaml [--section.key VALUE ...]"]
    return "\n".join(head + _section_lines(cls, 0)) + "\n"
