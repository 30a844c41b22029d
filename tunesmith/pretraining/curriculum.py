"""Curriculum learning: score documents by difficulty, pack them easy-to-hard, and sample
training blocks with a competence schedule (Platanios et al. 2019): at training progress
t in [0, 1] only the easiest c(t) share of blocks is sampled, c(0) = start_fraction,
c(t) = 1 from t = full_at on.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def competence(progress: float, start: float, full_at: float, pacing: str) -> float:
    x = min(1.0, max(0.0, progress / full_at))
    if pacing == "linear":
        c = start + (1 - start) * x
    elif pacing == "root":
        c = math.sqrt(start ** 2 + (1 - start ** 2) * x)
    elif pacing == "step":
        c = start if x < 1 else 1.0
    else:
        raise ValueError(f"unknown pacing {pacing!r}")
    return min(1.0, c)


def length_scores(token_counts: Sequence[int]) -> list[float]:
    return [float(n) for n in token_counts]


@torch.no_grad()
def perplexity_scores(model, docs_ids: Sequence[list[int]], max_tokens: int = 256,
                      batch_size: int = 16) -> list[float]:
    """Mean per-token NLL of each document (its first `max_tokens`) under a reference model."""
    model.eval()
    scores: list[float] = []
    for i in range(0, len(docs_ids), batch_size):
        chunk = [ids[:max_tokens] for ids in docs_ids[i:i + batch_size]]
        width = max(len(c) for c in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, c in enumerate(chunk):
            ids[j, :len(c)] = torch.tensor(c)
            mask[j, :len(c)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        m = mask[:, 1:].float()
        scores += ((nll * m).sum(1) / m.sum(1).clamp(min=1)).tolist()
    return scores


class CurriculumSampler(Sampler[int]):
    """Indices into blocks ordered easy -> hard. Sample i of `total` is drawn uniformly from
    the easiest ceil(c(i / total) * n) blocks. Deterministic for a seed, so a resumed run
    sees the same sequence."""

    def __init__(self, n_blocks: int, total_samples: int, start: float, full_at: float,
                 pacing: str, seed: int):
        self.n, self.total = n_blocks, max(1, total_samples)
        self.start, self.full_at, self.pacing, self.seed = start, full_at, pacing, seed

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed)
        for i in range(self.total):
            c = competence(i / self.total, self.start, self.full_at, self.pacing)
            limit = max(1, math.ceil(c * self.n))
            yield int(torch.randint(limit, (1,), generator=gen))
