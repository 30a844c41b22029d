"""Length-sorted batches with dynamic padding: the one trick that makes evaluation fast.

Sorting by length before batching means each batch pads only to its own longest sequence,
so short examples never pay for long ones; results are scattered back to input order.

>>> [b for b in sorted_batches([5, 1, 3, 2], batch_size=2)]
[[1, 3], [2, 0]]
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of at most `batch_size`, shortest sequences first."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad(sequences: Sequence[Sequence[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) padded to the longest sequence, on the right by default
    (left for generation). `pad([[1, 2], [3]], 0)` -> ([[1, 2], [3, 0]], [[1, 1], [1, 0]])"""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def map_sorted(items: Sequence[Sequence[int]], batch_size: int,
               fn: Callable[[list[int]], Sequence[T]]) -> list[T]:
    """Call `fn(batch_indices)` on length-sorted batches of `items`; return its per-item
    outputs in the original order."""
    out: list = [None] * len(items)
    for batch in sorted_batches([len(s) for s in items], batch_size):
        for i, value in zip(batch, fn(batch)):
            out[i] = value
    return out
