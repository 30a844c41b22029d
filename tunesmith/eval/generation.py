"""Exact-match accuracy of greedy generations (instruction sets, alignment stages).

Normalization, applied to the completion and to every reference answer: the completion
is cut at EOS and at the first `stop` string (a newline by default), then SQuAD-normalized
(lowercase, punctuation and the articles a/an/the removed, whitespace collapsed). A prompt
counts as correct when its normalized completion equals one of its normalized answers.

    exact_match_accuracy(model, tokenizer, ["Q: capital of France?\\nA:"], ["Paris"], max_new_tokens=5)
    # 1.0 when the model answers "Paris" (or " paris.")
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..core.errors import UserError
from .batching import pad, sorted_batches
from .metrics import squad_normalize


def greedy_completions(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, *,
                       batch_size: int = 16, stop: str | None = "\n") -> list[str]:
    """Greedy continuations of `prompts` (left-padded, length-sorted batches), cut at `stop`."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise UserError("tokenizer has neither a pad nor an EOS token", field="tokenizer")
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    if any(not e for e in encoded):
        raise UserError("an empty prompt cannot be continued", field="prompts")
    out: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in sorted_batches([len(e) for e in encoded], batch_size):
            ids, mask = pad([encoded[i] for i in batch], pad_id, left=True)
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
            for i, row in zip(batch, gen[:, ids.shape[1]:].cpu()):
                text = tokenizer.decode(row, skip_special_tokens=True)
                out[i] = text.split(stop)[0] if stop else text
    model.train(was_training)
    return out


def exact_match_accuracy(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str],
                         answers: Sequence[str | Sequence[str]], max_new_tokens: int = 32, *,
                         batch_size: int = 16, stop: str | None = "\n") -> float:
    """Share of prompts whose greedy completion matches an answer after normalization."""
    if len(prompts) != len(answers):
        raise UserError(f"got {len(prompts)} prompts for {len(answers)} answers", field="answers",
                        fix="pass one answer (or list of answers) per prompt")
    if not prompts:
        raise UserError("no prompts to score", field="prompts")
    completions = greedy_completions(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size, stop=stop)
    hits = 0
    for completion, gold in zip(completions, answers):
        golds = [gold] if isinstance(gold, str) else list(gold)
        hits += squad_normalize(completion) in {squad_normalize(g) for g in golds}
    return hits / len(prompts)
