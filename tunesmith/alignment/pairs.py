"""Reference-free scoring of preference pairs: does the policy give the chosen completion a higher
log-probability than the rejected one? Used before and after every preference stage.

Example:
    pair_scores(model, tok, preference_rows(["add"], 50, split="heldout"), "after/")
    # -> {'after/pair_accuracy': 0.9, 'after/logp_margin': 3.1, 'after/pairs': 50}
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..data.chat import render_messages
from .stage_data import TasksSection
from .toy_tasks import preference_rows


def _messages(x: Any) -> list[dict]:
    return list(x) if isinstance(x, list) else [{"role": "assistant", "content": str(x)}]


def completion_logprobs(model: Any, tokenizer: Any, prompts: Sequence[list[dict]], completions: Sequence[list[dict]],
                        batch_size: int = 64) -> list[float]:
    """Summed log-probability of each completion's tokens after its chat-rendered prompt."""
    out: list[float] = []
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    try:
        for start in range(0, len(prompts), batch_size):
            ids, starts = [], []
            for p, c in zip(prompts[start:start + batch_size], completions[start:start + batch_size]):
                head = render_messages(p, tokenizer, add_generation_prompt=True)
                full = render_messages(list(p) + list(c), tokenizer)
                starts.append(len(tokenizer(head, add_special_tokens=False)["input_ids"]))
                ids.append(tokenizer(full, add_special_tokens=False)["input_ids"])
            width = max(map(len, ids))
            batch = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros_like(batch)
            for i, row in enumerate(ids):
                batch[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = 1
            with torch.no_grad():
                logits = model(input_ids=batch.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            logp = logits[:, :-1].log_softmax(-1).gather(-1, batch[:, 1:, None].to(logits.device))[..., 0].cpu()
            for i, row in enumerate(ids):
                out.append(float(logp[i, starts[i] - 1:len(row) - 1].sum()))
    finally:
        model.train(was_training)
    return out


def pair_scores(model: Any, tokenizer: Any, rows: Sequence[dict], prefix: str = "") -> dict[str, float]:
    """`{prefix}pair_accuracy` (share of pairs with log p(chosen) > log p(rejected)) and
    `{prefix}logp_margin` (mean difference); {} for no rows."""
    if not rows:
        return {}
    prompts = [_messages(r["prompt"]) if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}]
               for r in rows]
    chosen = completion_logprobs(model, tokenizer, prompts, [_messages(r["chosen"]) for r in rows])
    rejected = completion_logprobs(model, tokenizer, prompts, [_messages(r["rejected"]) for r in rows])
    diffs = [c - r for c, r in zip(chosen, rejected)]
    return {f"{prefix}pair_accuracy": round(sum(d > 0 for d in diffs) / len(diffs), 4),
            f"{prefix}logp_margin": round(sum(diffs) / len(diffs), 4), f"{prefix}pairs": len(diffs)}


def heldout_pairs(task_cfg: TasksSection, data: Any) -> list[dict]:
    """Held-out task pairs when tasks are named, else the validation split's pairs (none for unpaired data)."""
    if task_cfg.names:
        return preference_rows(task_cfg.names, task_cfg.eval_rows, seed=task_cfg.seed + 1, split="heldout")
    if "validation" in data and "chosen" in data["validation"].column_names:
        return list(data["validation"])
    return []
