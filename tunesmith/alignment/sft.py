"""Supervised fine-tuning (instruction tuning) on any instruction or chat format, with TRL's SFTTrainer.

What tunesmith adds over a plain `SFTTrainer`:
- the chat template is applied once, by tunesmith (the model's own, or ChatML for base models);
- loss masks for ANY prefix-preserving chat template (TRL's assistant-only loss needs
  `{% generation %}` markers, which most templates lack): `loss: assistant` (every assistant
  turn, its end-of-turn token included), `completion` (the final assistant turn only) or `full`;
- packing (best-fit decreasing, no attention across examples) on by default, padding-free or
  padded batches on request; optional NEFTune noise;
- held-out exact match on the embedded tasks before and after training (`tasks:` block);
- a LoRA-family adapter also trains the embedding/LM-head rows of the chat template's special
  tokens (`adapter.trainable_tokens: auto`), so a base that never saw `<|im_end|>` learns to end
  its turn; the adapter folder stays a stock PEFT one.

    import tunesmith as ts
    result = ts.sft(model={"path": "runs/base/model"}, tasks={"names": ["add", "upper"]},
                    train={"max_steps": 200})
    print(result.metrics["before/exact_match"], result.metrics["after/exact_match"])
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import trl
from pydantic import Field

from ..adapters import AdapterConfig
from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.result import StageResult
from ..core.rundir import RunDir
from ..core.train_config import RunSection, TrainSection
from ..core.trainer_args import training_kwargs
from ..data import DataPrepConfig, render_messages
from ..hub.config import PushConfig
from ..lifecycle import Training, run_stage
from .common import ModelSection, load_policy
from .stage_data import TasksSection, stage_data, task_scores


class SFTSection(Section):
    """How examples become training tokens."""

    loss: Literal["assistant", "completion", "full"] = Field("assistant", description=(
        "tokens that carry loss: assistant (every assistant turn) | completion (the final assistant turn) | full"))
    batching: Literal["packing", "padding_free", "padding"] = Field("packing", description=(
        "packing (best-fit packs of max_length, attention kept within each example) | padding_free "
        "(examples concatenated per batch, no pad tokens) | padding (pad to the longest in the batch)"))
    max_length: int = Field(512, ge=8, description="tokens per example (longer ones are truncated) or per pack")
    neftune_alpha: float | None = Field(None, gt=0, description="NEFTune: embedding noise scale (e.g. 5); null disables")


class SFTConfig(Section):
    """The `tunesmith sft` recipe."""

    model: ModelSection = Field(description="the model to fine-tune")
    adapter: AdapterConfig = Field(default_factory=AdapterConfig, description="adapter (LoRA by default)")
    data: DataPrepConfig = Field(default_factory=DataPrepConfig, description="training data (any instruction/chat format)")
    tasks: TasksSection = Field(default_factory=TasksSection, description="embedded tasks: data and held-out scoring")
    sft: SFTSection = Field(default_factory=SFTSection, description="loss masking, batching, NEFTune")
    train: TrainSection = Field(default_factory=lambda: TrainSection(lr=1e-3, warmup_steps=10),
                                description="optimisation")
    run: RunSection = Field(default_factory=RunSection, description="run folder")
    push_to_hub: PushConfig | None = Field(None, description="push the result to the Hub at the end: {repo: user/name, ...}")


def conversation(row: dict[str, Any]) -> tuple[list[dict], int]:
    """(messages, index of the first completion message) of a prepared instruction row."""
    if "messages" in row:
        msgs = list(row["messages"])
        last_user = max((i for i, m in enumerate(msgs) if m["role"] != "assistant"), default=-1)
        return msgs, last_user + 1
    return list(row["prompt"]) + list(row["completion"]), len(row["prompt"])


def assistant_spans(messages: list[dict], tokenizer: Any, first: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns from message
    `first` on, each from just after the assistant header to the end of the turn (end-of-turn
    token included). Works for any template where a conversation's text starts with the text of
    each of its prefixes; raises UserError otherwise.

    Example:
        text, spans = assistant_spans([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tok)
        # with ChatML: spans covers "yo<|im_end|>" (the assistant turn and its end-of-turn token)
    """
    text = render_messages(messages, tokenizer)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or i < first:
            continue
        prefix = render_messages(messages[:i], tokenizer, add_generation_prompt=True) if i else ""
        end_text = render_messages(messages[:i + 1], tokenizer)
        if not text.startswith(end_text) or not end_text.startswith(prefix):
            raise UserError("the chat template does not render a conversation as an extension of its "
                            "prefixes, so assistant turns cannot be located", field="model.chat_template",
                            fix="use sft.loss: full, or a prefix-preserving template (e.g. chat_template: chatml)")
        start = len(prefix)
        spans.append((start, len(end_text)))
    return text, spans


def tokenize_example(row: dict[str, Any], tokenizer: Any, loss: str) -> dict[str, list[int]]:
    """`{"input_ids", "assistant_masks"}` of one prepared row; mask 1 = the token carries loss.
    A token is masked in when its first character lies in a selected span."""
    if "text" in row:
        ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids = ids + [tokenizer.eos_token_id]
        return {"input_ids": ids, "assistant_masks": [1] * len(ids)}
    messages, first = conversation(row)
    if loss == "full":
        text, spans = render_messages(messages, tokenizer), None
    else:
        text, spans = assistant_spans(messages, tokenizer, first if loss == "completion" else 0)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if spans is None:
        mask = [1] * len(enc["input_ids"])
    else:
        mask = [int(any(s <= a < e for s, e in spans)) for a, _ in enc["offset_mapping"]]
    return {"input_ids": enc["input_ids"], "assistant_masks": mask}


def tokenize_split(dataset: Any, tokenizer: Any, loss: str) -> Any:
    """A prepared split -> `input_ids` + `assistant_masks` columns (TRL builds labels from the mask)."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("loss masking needs a fast tokenizer (character offsets)", field="model.tokenizer",
                        fix="use a tokenizer with tokenizer.json, or sft.loss: full")
    return dataset.map(lambda row: tokenize_example(row, tokenizer, loss), remove_columns=dataset.column_names)


def trl_sft_args(cfg: SFTConfig, run: Any, dtype: str, has_eval: bool) -> trl.SFTConfig:
    """Our config -> TRL's SFTConfig (shared training defaults from `training_kwargs`)."""
    b = cfg.sft.batching
    return trl.SFTConfig(
        **training_kwargs(cfg.train, run, dtype, has_eval),
        # padding-free without packing does not truncate in TRL: tunesmith truncates while tokenizing
        max_length=None if b == "padding_free" else cfg.sft.max_length, packing=b == "packing",
        packing_strategy="bfd", padding_free=b == "padding_free", neftune_noise_alpha=cfg.sft.neftune_alpha,
        shuffle_dataset=True, eval_packing=False,
    )


def _truncate(dataset: Any, max_length: int) -> Any:
    return dataset.map(lambda r: {k: r[k][:max_length] for k in ("input_ids", "assistant_masks")})


def sft(config: SFTConfig | dict | str | Path | None = None, **sections: Any) -> StageResult:
    """Supervised fine-tuning as `config` says (see SFTConfig); returns the run folder, the saved
    adapter (or model) and metrics: train/eval loss and, with `tasks.names`, held-out exact match
    before and after (`before/exact_match`, `after/exact_match`, per task).

    Example:
        r = sft(model={"path": "base"}, tasks={"names": ["upper"]}, train={"max_steps": 100})
        r.metrics["after/exact_match"] > r.metrics["before/exact_match"]
        # -> True
    """
    cfg = coerce(SFTConfig, config, **sections)

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        model, tok = load_policy(cfg.model, cfg.adapter, chat_tokens=True,
                                  gradient_checkpointing=cfg.train.gradient_checkpointing)
        data = stage_data(cfg.data, cfg.tasks, run, tok, "instruction")
        train_ds = _truncate(tokenize_split(data["train"], tok, cfg.sft.loss), cfg.sft.max_length)
        eval_ds = _truncate(tokenize_split(data["validation"], tok, cfg.sft.loss), cfg.sft.max_length) \
            if "validation" in data else None
        return SimpleNamespace(model=model, tok=tok, train=train_ds, eval=eval_ds,
                               environment={"train_rows": train_ds.num_rows})

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        before = task_scores(x.model, x.tok, cfg.tasks, "before/")
        trainer = trl.SFTTrainer(model=x.model, args=trl_sft_args(cfg, run, dtype, x.eval is not None),
                                 train_dataset=x.train, eval_dataset=x.eval, processing_class=x.tok)

        def after(trained: Any) -> dict[str, Any]:
            scores = trainer.evaluate() if x.eval is not None else {}
            return {**{k: v for k, v in scores.items() if isinstance(v, (int, float))},
                    **task_scores(trained, x.tok, cfg.tasks, "after/")}
        return Training(trainer, before, after)

    return run_stage("sft", cfg, load, build)
