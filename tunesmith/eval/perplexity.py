"""Perplexity of a causal LM on a set of texts (strided sliding window).

The texts are tokenized, joined with EOS into one stream (BOS first when the tokenizer has
one, so every text token is predicted) and scored in windows of `block_size` tokens that
advance by `stride`; each token is scored once, with up to `block_size - stride` tokens of
extra left context when windows overlap (the method of the transformers perplexity guide;
with stride == block_size consecutive windows share one token, so none goes unscored).

perplexity(model, tokenizer, ["To be, or not to be", "that is the question"])["perplexity"]
# -> 41.7
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..adapters.merge import merged_for_inference
from ..core.errors import UserError
from .batching import pad


def perplexity(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, block_size: int | None = None,
               stride: int | None = None, batch_size: int = 8) -> dict[str, float]:
    """{"perplexity", "nll" (mean per token, nats), "tokens" (scored)} over `texts`."""
    block = block_size or min(getattr(model.config, "max_position_embeddings", 1024) or 1024, 1024)
    stride = stride or block
    if not 0 < stride <= block:
        raise UserError(f"stride {stride} must be between 1 and block_size {block}", field="stride")
    stream: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            stream.append(tokenizer.eos_token_id)
    if len(stream) < 2:
        raise UserError("no tokens to score", field="texts", fix="pass non-empty texts")
    windows: list[tuple[int, int, int]] = []  # (begin, end, first scored position)
    scored_to, begin = 1, 0
    while scored_to < len(stream):
        end = min(begin + block, len(stream))
        windows.append((begin, end, max(scored_to, begin + 1)))
        scored_to, begin = end, min(begin + stride, end - 1)  # >= 1 token of context in every window
    total, count = 0.0, 0
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with merged_for_inference(model), torch.inference_mode():  # a PeftModel scores at bare-model cost
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            ids, mask = pad([stream[b:e] for b, e, _ in chunk], pad_id)
            logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device))
                                     .logits.float(), dim=-1).cpu()
            for row, (b, e, first) in enumerate(chunk):
                targets = torch.tensor(stream[first:e])
                picked = logp[row, first - b - 1:e - b - 1].gather(1, targets[:, None])
                total -= float(picked.sum())
                count += len(targets)
    nll = total / count
    return {"perplexity": math.exp(nll), "nll": nll, "tokens": count}
