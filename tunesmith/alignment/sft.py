"""Supervised fine-tuning (instruction tuning) on any instruction or chat format, with TRL's SFTTrainer.

What tunesmith adds over a plain `SFTTrainer`:
- the chat template is applied once, by tunesmith (the model's own, or ChatML for base models);
- loss masks for ANY prefix-preserving chat template (TRL's assistant-only loss needs
  `{% generation %}` markers, which most templates lack): `loss: assistant` (every assistant
  turn, its end-of-turn token included), `completion` (the final assistant turn only) or `full`;
- batching measured per device (`sft.batching: auto`, `tunesmith.alignment.batching`): on CPU,
  best-fit packed rows with attention per example (no padding, no cross-example attention, no
  whole-batch attention); TRL's flat padding-free packing where FlashAttention varlen runs; the
  choice and its measured tokens/s recorded in environment.json; optional NEFTune noise;
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

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import trl
from jinja2 import TemplateError
from pydantic import Field

from ..adapters import AdapterConfig
from ..compat import plain_lm_head
from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.result import StageResult
from ..core.rundir import RunDir
from ..core.train_config import RunSection, TrainSection
from ..core.trainer_args import batch_layout, training_kwargs
from ..data import DataPrepConfig, render_messages
from ..data.chat import has_extras, unrendered
from ..hub.config import PushConfig
from ..lifecycle import Training, decide_checkpointing, run_stage
from . import batching
from .common import ModelSection, load_policy
from .packed import PackedRowsCollator, use_packed_attention
from .stage_data import TasksSection, stage_data, task_scores


class SFTSection(Section):
    """How examples become training tokens."""

    loss: Literal["assistant", "completion", "full"] = Field("assistant", description=(
        "tokens that carry loss: assistant (every assistant turn) | completion (the final assistant turn) | full"))
    batching: Literal["auto", "packed_rows", "packing", "padding_free", "padding"] = Field("auto", description=(
        "auto (measured on the model and data: the layout with the most real tokens/s, recorded in "
        "environment.json) | packed_rows (best-fit rows of max_length, batched, attention within each "
        "example: fast on CPU) | packing (TRL's: the batch's best-fit packs as one flat row; fast with "
        "FlashAttention varlen) | padding_free (examples concatenated per batch) | padding (pad to the "
        "longest in the batch)"))
    max_length: int = Field(512, ge=8, description="tokens per example (longer ones are truncated) or per pack")
    reasoning: Literal["auto", "train", "mask"] = Field("auto", description=(
        "loss on the <think>...</think> blocks templates such as Qwen3's render in assistant turns: auto "
        "(default: an empty block, the filler the template writes before a reply without reasoning, "
        "carries no loss; real reasoning from the data, reasoning_content, is trained) | train (every "
        "block, filler included, as TRL's qwen3 training template does) | mask (no block: train the "
        "answers only; the reasoning stays in the context). Training the filler teaches the model to "
        "skip thinking on its own, while Qwen3 expects it written by the prompt (enable_thinking=false); "
        "see LLaMA-Factory #9365/#9090 and TRL #6363"))
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


_NOT_LOCATED = ("the chat template does not render a conversation as an extension of its prefixes, "
                "nor each assistant turn as it renders alone (less leading text it drops, such as reasoning), "
                "so assistant turns cannot be located")
_THINK = re.compile(r"<think>(.*?)</think>\n*", re.DOTALL)


def _not_located(detail: str = "") -> UserError:
    return UserError(_NOT_LOCATED + detail, field="model.chat_template",
                     fix="use sft.loss: full, or a prefix-preserving template (e.g. chat_template: chatml)")


def _turn_end(text: str, start: int, turn: str) -> int | None:
    """The end of the assistant turn that starts at `start` in `text`, where the turn is rendered
    as `turn` or as `turn` less some leading text (Qwen3 drops the reasoning block of a turn that a
    later user message follows): the largest end whose text from `start` is a suffix of `turn`."""
    last = turn[-1:]
    for end in range(min(len(text), start + len(turn)), start, -1):
        if text[end - 1] == last and turn.endswith(text[start:end]):
            return end
    return None


def _turn_starts(text: str, head: str, cursor: int) -> list[int]:
    """Where the assistant turn after `cursor` (the end of the previous turn) may start in `text`
    when `head` (its prefix rendered with the generation prompt) is not a prefix of `text`: the
    messages between the turns and the generation prompt render the same, so `text[cursor:start]`
    is a suffix of `head`. Nearest first (a later start could fall inside the turn itself)."""
    starts = []
    for k in (8, 1):
        probe = text[cursor:cursor + k]
        p = head.find(probe) if probe else -1
        while p >= 0:
            if text.startswith(head[p:], cursor):
                starts.append(cursor + len(head) - p)
            p = head.find(probe, p + 1)
        if starts:
            break
    return sorted(set(starts))


def _shows_turn(turn_text: str, msg: dict[str, Any]) -> bool:
    """Whether a located turn still holds the message's answer and tool calls (not only its end)."""
    answer = msg.get("content") or ""
    answer = answer.split("</think>")[-1].strip()
    names = [c["function"]["name"] for c in msg.get("tool_calls") or () if c and c.get("function")]
    return (not answer or answer in turn_text) and all(n in turn_text for n in names)


def assistant_spans(messages: list[dict], tokenizer: Any, first: int = 0,
                    tools: Any = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns from message
    `first` on, each from just after the assistant header (the generation prompt) to the end of
    the turn (end-of-turn token included, and what the template writes up to the next message).

    Works for any template that renders a turn as its prefixes' generation prompt followed by the
    turn (what `apply_chat_template(messages[:i+1])` adds over `messages[:i]` with
    `add_generation_prompt=True`), the way LLaMA-Factory and TRL read turns: prefix-preserving
    templates directly; templates that re-render earlier turns differently (Qwen3's drops the
    `<think>` block of turns a later user message follows, and the empty one of a turn that is not
    last) by finding each turn, as it appears in the full text, after the previous one. Raises
    UserError when a turn cannot be found that way.

    Example:
        text, spans = assistant_spans([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tok)
        # with ChatML: spans covers "yo<|im_end|>\\n" (the assistant turn and its end-of-turn)
    """
    text = render_messages(messages, tokenizer, tools=tools)
    spans, cursor = [], 0
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        head = render_messages(messages[:i], tokenizer, add_generation_prompt=True, tools=tools) if i else ""
        alone = render_messages(messages[:i + 1], tokenizer, tools=tools)
        if not alone.startswith(head):
            raise _not_located()
        if text.startswith(alone) and len(head) >= cursor:        # prefix-preserving so far
            start, end = len(head), len(alone)
        else:
            turn = alone[len(head):]
            starts = [len(head)] if text.startswith(head) and len(head) >= cursor else _turn_starts(text, head, cursor)
            found = [(s, e) for s in starts for e in [_turn_end(text, s, turn)]
                     if e is not None and _shows_turn(text[s:e], msg)]
            if not found:
                raise _not_located(f" (message {i + 1})")
            start, end = found[0]
        cursor = end
        if i >= first:
            spans.append((start, end))
    return text, spans


def _without_reasoning(text: str, spans: list[tuple[int, int]], reasoning: str) -> list[tuple[int, int]]:
    """`spans` less the <think>...</think> blocks (and the newlines after them) that `reasoning`
    keeps out of the loss: none (train), empty ones (auto), all (mask)."""
    if reasoning == "train":
        return spans
    out = []
    for s, e in spans:
        for m in _THINK.finditer(text, s, e):
            if reasoning == "mask" or not m.group(1).strip():
                out.append((s, m.start()))
                s = m.end()
        out.append((s, e))
    return [(s, e) for s, e in out if e > s]


def tokenize_example(row: dict[str, Any], tokenizer: Any, loss: str, reasoning: str = "auto") -> dict[str, list[int]]:
    """`{"input_ids", "assistant_masks"}` of one prepared row; mask 1 = the token carries loss.
    A token is masked in when its first character lies in a selected span. `reasoning` (auto,
    train, mask) says which <think> blocks of the selected turns carry loss (SFTSection.reasoning).
    A row whose tools, tool calls or reasoning the chat template does not render is refused."""
    if "text" in row:
        ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids = ids + [tokenizer.eos_token_id]
        return {"input_ids": ids, "assistant_masks": [1] * len(ids)}
    messages, first = conversation(row)
    tools = row.get("tools")
    try:
        if has_extras(messages, tools) and (missing := unrendered(messages, tokenizer, tools)):
            raise UserError(f"the chat template does not render {missing} of a training row, so it would train "
                            "on a different conversation", field="model.chat_template",
                            fix="use the model's tool-calling template (model.chat_template), or remove them "
                                "from the data")
        if loss == "full":
            text, spans = render_messages(messages, tokenizer, tools=tools), None
        else:
            text, spans = assistant_spans(messages, tokenizer, first if loss == "completion" else 0, tools=tools)
            spans = _without_reasoning(text, spans, reasoning)
    except TemplateError as e:          # raise_exception() in the template (e.g. roles it cannot render)
        raise UserError(f"the chat template rejects a training row: {e}", field="model.chat_template",
                        fix="check the rows with `tunesmith data check --tokenizer MODEL`") from None
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if spans is None:
        mask = [1] * len(enc["input_ids"])
    else:
        mask = [int(any(s <= a < e for s, e in spans)) for a, _ in enc["offset_mapping"]]
    return {"input_ids": enc["input_ids"], "assistant_masks": mask}


def tokenize_split(dataset: Any, tokenizer: Any, loss: str, reasoning: str = "auto") -> Any:
    """A prepared split -> `input_ids` + `assistant_masks` columns (TRL builds labels from the mask)."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("loss masking needs a fast tokenizer (character offsets)", field="model.tokenizer",
                        fix="use a tokenizer with tokenizer.json, or sft.loss: full")
    return dataset.map(lambda row: tokenize_example(row, tokenizer, loss, reasoning),
                       remove_columns=dataset.column_names)


def trl_sft_args(cfg: SFTConfig, run: Any, dtype: str, has_eval: bool, layout: str | None = None) -> trl.SFTConfig:
    """Our config -> TRL's SFTConfig (shared training defaults from `training_kwargs`); `layout`
    is the batching in use (`cfg.sft.batching` with auto resolved)."""
    b = layout or cfg.sft.batching
    return trl.SFTConfig(
        **training_kwargs(cfg.train, run, dtype, has_eval),
        # padding-free without packing does not truncate in TRL: tunesmith truncates while tokenizing;
        # packed rows arrive packed (rows of at most max_length)
        max_length=None if b in ("padding_free", "packed_rows") else cfg.sft.max_length, packing=b == "packing",
        packing_strategy="bfd", padding_free=b == "padding_free", neftune_noise_alpha=cfg.sft.neftune_alpha,
        shuffle_dataset=True, eval_packing=False,
    )


def _truncate(dataset: Any, max_length: int) -> Any:
    return dataset.map(lambda r: {k: r[k][:max_length] for k in ("input_ids", "assistant_masks")})


def _layout(cfg: SFTConfig, model: Any, tok: Any, train_ds: Any) -> dict[str, Any]:
    """The batching layout (measured when auto), its training data and collator, and a batch
    of it for the dtype probe."""
    requested = cfg.sft.batching
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if requested in ("packing", "padding_free", "padding"):
        return {"train": train_ds, "mode": requested, "pad_id": pad_id,
                "record": {"choice": requested, "requested": requested}}
    if requested == "packed_rows" and not batching.supports_packed_rows(model):
        raise UserError("packed rows need a decoder on sdpa attention without sliding-window layers",
                        field="sft.batching", fix="use sft.batching: auto (or padding)")
    per_device, _ = batch_layout(cfg.train)
    labelled = batching.with_labels(train_ds)
    packed = batching.pack_rows(labelled, cfg.sft.max_length, cfg.train.seed) \
        if batching.supports_packed_rows(model) else None
    # activation checkpointing (auto) first, on a batch as packed rows would train: the layouts are then
    # timed as they will train, and never hold the activations checkpointing avoids
    first = "packed_rows" if packed is not None else "padding"
    sample = batching.sample_batches(first, labelled, packed, per_device, pad_id, count=1)[0][0]
    checkpointing = decide_checkpointing(cfg.train, model, {k: v for k, v in sample.items() if k in batching.MODEL_INPUTS},
                                         batching.context(first, model))
    mode, record = batching.choose(model, labelled, packed, per_device, pad_id, requested)
    probe = batching.sample_batches(mode, labelled, packed, per_device, pad_id, count=1)[0][0]
    return {"train": packed if mode == "packed_rows" else labelled, "mode": mode, "record": record,
            "pad_id": pad_id, "probe_batch": {k: v for k, v in probe.items() if k in batching.MODEL_INPUTS},
            "probe_context": batching.context(mode, model), "checkpointing": checkpointing}


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
                                  gradient_checkpointing=cfg.train.gradient_checkpointing is True)
        data = stage_data(cfg.data, cfg.tasks, run, tok, "instruction")
        train_ds = _truncate(tokenize_split(data["train"], tok, cfg.sft.loss, cfg.sft.reasoning), cfg.sft.max_length)
        eval_ds = _truncate(tokenize_split(data["validation"], tok, cfg.sft.loss, cfg.sft.reasoning), cfg.sft.max_length) \
            if "validation" in data else None
        layout = _layout(cfg, model, tok, train_ds)
        return SimpleNamespace(model=model, tok=tok, eval=eval_ds, **layout,
                               environment={"train_rows": train_ds.num_rows, "batching": layout["record"]})

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        before = task_scores(x.model, x.tok, cfg.tasks, "before/")
        packed_rows = x.mode == "packed_rows"
        collator = PackedRowsCollator(pad_token_id=x.pad_id) if packed_rows else None
        trainer = trl.SFTTrainer(model=x.model, args=trl_sft_args(cfg, run, dtype, x.eval is not None, x.mode),
                                 train_dataset=x.train, eval_dataset=x.eval, processing_class=x.tok,
                                 data_collator=collator)
        plain_lm_head(trainer.model, outputs=("log_probs", "entropy", "is_top1"))  # what TRL's SFT asks
        restore = use_packed_attention(x.model) if packed_rows else (lambda: None)

        def after(trained: Any) -> dict[str, Any]:
            restore()  # evaluation and generation on the model's own attention
            scores = trainer.evaluate() if x.eval is not None else {}
            return {**{k: v for k, v in scores.items() if isinstance(v, (int, float))},
                    **task_scores(trained, x.tok, cfg.tasks, "after/")}
        return Training(trainer, before, after)

    return run_stage("sft", cfg, load, build)
