"""How SFT examples become batches, and `sft.batching: auto`: the layout that trains the most
real (non-padding) tokens per second on this device, measured on the actual model and data.

- `packed_rows`: best-fit-decreasing rows of at most `max_length` tokens, batched [batch, row]
  with attention per example (`tunesmith.alignment.packed`): no cross-example attention, almost
  no padding, attention cost the sum of squared example lengths. The CPU choice.
- `packing`: TRL's padding-free packing, the whole batch one flat row; fast only with a
  variable-length attention kernel (FlashAttention varlen), where it is measured too.
- `padding`: one example per row, padded to the longest in the batch (TRL's default).
- `padding_free`: TRL's flat rows without packing (never picked by auto).

    mode, record = choose(model, tok, train_ds, per_device=8, max_length=512)
    record  # {"choice": "packed_rows", "tokens_per_s": {"packed_rows": ..., "padding": ...}, ...}
"""
from __future__ import annotations

import random
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch

from ..core.device import cached, model_key, probing
from .packed import PackedRowsCollator, packed_attention, supports_packed_rows

PROBE_BATCHES = 2  # per layout: one warm-up, one timed
MODEL_INPUTS = ("input_ids", "labels", "attention_mask", "position_ids")


def with_labels(dataset: Any) -> Any:
    """`input_ids` + `assistant_masks` -> `input_ids` + `labels` (-100 where the mask is 0), rows
    without any loss token dropped (as TRL's preparation does)."""
    def label(row: dict) -> dict:
        return {"labels": [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"])]}

    out = dataset.map(label, remove_columns=["assistant_masks"])
    return out.filter(lambda row: any(x != -100 for x in row["labels"]))


def pack_rows(dataset: Any, max_length: int, seed: int) -> Any:
    """Labelled examples -> rows of at most `max_length` tokens (TRL's best-fit decreasing; each
    row keeps its examples' `seq_lengths`), after a seeded shuffle (as TRL's packing does)."""
    from trl.data_utils import pack_dataset

    return pack_dataset(dataset.select_columns(["input_ids", "labels"]).shuffle(seed=seed), max_length, "bfd")


def text_length(value: Any) -> int:
    """Characters of a prompt or completion (a string, or a conversation's message contents): a
    stand-in for its token count where only the order of lengths matters."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(text_length(m.get("content", "")) if isinstance(m, dict) else text_length(m) for m in value)
    return len(str(value)) if value is not None else 0


def grouped_order(lengths: list[int], batch: int, seed: int, mega: int = 50) -> list[int]:
    """A row order for a sequential sampler whose consecutive `batch`-row runs hold similar
    lengths (little padding), the batches in random order: a seeded shuffle, then groups of
    `mega` batches sorted by length and cut into batches; full batches shuffled, the one partial
    batch last (so every later run stays aligned to the batch size). As transformers'
    LengthGroupedSampler, for trainers that must read rows in order (KTO's KL pairs)."""
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    ordered = []
    for start in range(0, len(idx), batch * mega):
        ordered += sorted(idx[start:start + batch * mega], key=lambda i: -lengths[i])
    full = len(ordered) // batch * batch
    batches = [ordered[i:i + batch] for i in range(0, full, batch)]
    rng.shuffle(batches)
    return [i for b in batches for i in b] + ordered[full:]


def varlen_kernel(model: Any) -> bool:
    """Whether the model's attention has a variable-length kernel (FlashAttention), where one flat
    padding-free row costs no more than its examples apart."""
    impl = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    return torch.cuda.is_available() and "flash" in impl


def candidates(model: Any) -> list[str]:
    """The layouts `auto` measures for this model on this device."""
    out = ["packed_rows"] if supports_packed_rows(model) else []
    out.append("padding")
    if varlen_kernel(model):
        out.append("packing")
    return out


def _padded(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_id)(rows)


def _flat(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)(rows)


def sample_batches(mode: str, labelled: Any, packed: Any, per_device: int, pad_id: int,
                   count: int = PROBE_BATCHES, seed: int = 0) -> list[tuple[dict, int]]:
    """`count` batches as `mode` would train on, drawn at random: (batch, real tokens)."""
    rng = random.Random(seed)
    source = labelled if mode == "padding" else packed
    out = []
    for _ in range(count):
        idx = rng.sample(range(source.num_rows), min(per_device, source.num_rows))
        rows = [source[i] for i in idx]
        if mode == "padding":
            batch = _padded(rows, pad_id)
        elif mode == "packing":
            batch = _flat(rows, pad_id)
        else:
            batch = PackedRowsCollator(pad_token_id=pad_id)(rows)
        out.append((batch, sum(len(r["input_ids"]) for r in rows)))
    return out


def context(mode: str, model: Any) -> Callable[[], Any]:
    """What the model trains inside for `mode`: per-example attention for packed rows."""
    return (lambda: packed_attention(model)) if mode == "packed_rows" else nullcontext


def time_layout(model: Any, batches: list[tuple[dict, int]], enter: Callable[[], Any]) -> float:
    """Real tokens per second of fp32 forward+backward over `batches` (the first is a warm-up)."""
    from ..core.device import model_step

    seconds = tokens = 0.0
    with enter():
        for i, (batch, real) in enumerate(batches):
            model_inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
            t, _ = model_step(model, model_inputs)("fp32")
            if i or len(batches) == 1:
                seconds, tokens = seconds + t, tokens + real
    return tokens / seconds


def choose(model: Any, labelled: Any, packed: Any, per_device: int, pad_id: int,
           requested: str = "auto") -> tuple[str, dict[str, Any]]:
    """(layout, record): `requested` unless it is auto; auto times each candidate layout's random
    batches (fp32 forward+backward) and keeps the one with the most real tokens per second. The
    record (for environment.json) holds the choice, each layout's measured tokens/s and the
    padding share of the sampled batches; cached per machine, model and batch size."""
    if requested != "auto":
        return requested, {"choice": requested, "requested": requested}
    options = candidates(model)
    if len(options) == 1:
        return options[0], {"choice": options[0], "requested": "auto", "candidates": options}

    def measure() -> dict:
        rates = {}
        with probing(model):
            for mode in options:
                rates[mode] = round(time_layout(model, sample_batches(mode, labelled, packed, per_device, pad_id),
                                                context(mode, model)), 1)
        return {"choice": max(rates, key=rates.get), "tokens_per_s": rates}

    lengths = [len(x) for x in labelled["input_ids"]]
    key = {**model_key(model, {}), "per_device": per_device, "rows": len(lengths),
           "mean_length": round(sum(lengths) / max(len(lengths), 1)), "longest": max(lengths, default=0),
           "candidates": options}
    start = time.perf_counter()
    record = cached("batching", key, measure)
    return record["choice"], {**record, "requested": "auto", "probe_seconds": round(time.perf_counter() - start, 2)}
