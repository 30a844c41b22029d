"""Packed rows: examples bin-packed (best-fit decreasing, TRL's `pack_dataset`) into rows of at
most `max_length` tokens, batched as [batch, longest row] with each example attending only within
itself. What `sft.batching: packed_rows` trains on.

Why not TRL's padding-free packing: it flattens the whole batch into one ~batch x max_length row,
which is fast where a variable-length attention kernel (FlashAttention varlen) computes each
example's attention alone; elsewhere (CPU, sdpa) the attention then costs what the whole row costs.
Here each row's examples are found from `position_ids` (restarting at 0 per example, as TRL's
packed rows carry them) and attention runs per example with a causal kernel
(`packed_sdpa`, registered with transformers' `AttentionInterface` as "tunesmith_packed"): the
attention cost is the sum of the squared example lengths, and no block-diagonal mask is built.
Any batch with an attention mask, a cache or a query shorter than its keys (evaluation,
generation) goes to transformers' own sdpa path unchanged.

    collate = PackedRowsCollator(pad_token_id=tok.pad_token_id)
    batch = collate([{"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8], "seq_lengths": [2, 2]}])
    # position_ids [[0, 1, 0, 1]]; labels [[-100, 6, -100, 8]] (no loss across the boundary);
    # attention_mask [[1, 1, 1, 1]] (what the trainer counts real tokens by)
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

ATTENTION = "tunesmith_packed"


@dataclass
class PackedRowsCollator:
    """Rows of packed examples (`input_ids`, `labels`, `seq_lengths` per row) -> a padded batch:
    `input_ids` (pad token after each row), `labels` (-100 on padding and on each example's first
    token, so no example predicts the next one's start), `position_ids` restarting per example
    (padding counts as one more example) and `attention_mask` (1 on real tokens: what the trainer
    counts them by; `packed_sdpa` reads the example boundaries from `position_ids`). A row without
    `seq_lengths` is one example."""

    pad_token_id: int

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row.get("labels", row["input_ids"]))
            start = 0
            for length in list(row.get("seq_lengths") or [n]) + [width - n]:
                positions[i, start:start + length] = torch.arange(length)
                if length:
                    labels[i, start] = -100
                start += length
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}


def segments(position_ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each example: a new example starts wherever the position does
    not follow the previous one (the rule transformers' `find_packed_sequence_indices` uses)."""
    out = []
    for row in position_ids.tolist():
        starts = [0] + [j for j in range(1, len(row)) if row[j] != row[j - 1] + 1]
        out.append(list(zip(starts, starts[1:] + [len(row)])))
    return out


def packed_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention computed per example of each packed row (query/key/value [batch, heads,
    length, dim]; returns [batch, length, heads, dim] as transformers' attention functions do).
    Falls back to transformers' sdpa when there is a mask, no `position_ids`, or a cache."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2] \
            or not getattr(module, "is_causal", True):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if position_ids.shape[0] != query.shape[0]:
        position_ids = position_ids.expand(query.shape[0], -1)
    rows = []
    for b, spans in enumerate(segments(position_ids)):
        parts = [sdpa_attention_forward(module, query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e],
                                        None, dropout=dropout, scaling=scaling, is_causal=True)[0]
                 for s, e in spans]
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    return torch.cat(rows, dim=0), None


def _packed_mask(*args: Any, attention_mask: torch.Tensor | None = None, q_offset: int = 0, kv_offset: int = 0,
                 q_length: int | None = None, kv_length: int | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask for a training batch of packed rows (no cache; a 2D padding mask, if any, marks
    only each row's tail, which causal attention never lets a real token see): `packed_sdpa`
    reads the example boundaries from `position_ids`. Anything else gets sdpa's mask."""
    from transformers.masking_utils import sdpa_mask

    if q_offset == 0 and kv_offset == 0 and q_length == kv_length and (attention_mask is None or attention_mask.ndim == 2):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, q_offset=q_offset, kv_offset=kv_offset,
                     q_length=q_length, kv_length=kv_length, **kwargs)


def register() -> None:
    """Make "tunesmith_packed" a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, packed_sdpa)
    AttentionMaskInterface.register(ATTENTION, _packed_mask)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_packed_rows(model: Any) -> bool:
    """Whether `model` can train on packed rows with `packed_sdpa`: a decoder on transformers'
    sdpa attention (the implementation it replaces) that can switch attention implementations,
    without sliding-window layers (the per-example attention here is plain causal)."""
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", ATTENTION):
        return False
    if not (hasattr(base, "_can_set_attn_implementation") and base._can_set_attn_implementation()):
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return not getattr(text, "sliding_window", None) and not getattr(text, "is_encoder_decoder", False)


def use_packed_attention(model: Any) -> Callable[[], None]:
    """Switch `model` to per-example attention over packed rows; returns the function that
    switches it back (to sdpa), so evaluation, generation and the saved config are unchanged."""
    register()
    base = _base(model)
    previous = base.config._attn_implementation
    base.set_attn_implementation(ATTENTION)
    return lambda: base.set_attn_implementation(previous)


@contextmanager
def packed_attention(model: Any) -> Iterator[None]:
    """`use_packed_attention` for the duration of a block."""
    restore = use_packed_attention(model)
    try:
        yield
    finally:
        restore()
