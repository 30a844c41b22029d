"""A causal-LM loss that keeps one copy of the logits instead of three.

transformers' `ForCausalLMLoss` runs `cross_entropy` over the full [tokens, vocab] logits:
autograd keeps the log-softmax output, and the backward pass adds the gradient of that
output and then the gradient of the logits, three float tensors of [tokens, vocab] at the
start of backward (with a 32k vocabulary and 1024 tokens, 125 MiB each). `lean_causal_lm_loss`
computes the same value row block by row block, keeps only the logits themselves, and
writes their gradient block by block in backward: two copies at the peak, not three, plus
one block of temporaries. The value and the gradients equal the stock loss (fp32 rounding).

`apply` installs it on causal-LM models (`model.loss_function = lean_causal_lm_loss`).
"""
from __future__ import annotations

import torch

ROWS_PER_BLOCK = 1024  # temporaries per block: ROWS_PER_BLOCK x vocab floats


class _CrossEntropySum(torch.autograd.Function):
    """sum over valid rows of -log softmax(logits)[target], divided by `divisor`."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, divisor: torch.Tensor,
                ignore_index: int) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float32)
        for start in range(0, logits.shape[0], ROWS_PER_BLOCK):
            block = logits[start:start + ROWS_PER_BLOCK].float()
            target = targets[start:start + ROWS_PER_BLOCK]
            valid = target != ignore_index
            picked = block.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)
            total += ((torch.logsumexp(block, dim=-1) - picked) * valid).sum()
        ctx.save_for_backward(logits, targets, divisor)
        ctx.ignore_index = ignore_index
        return total / divisor

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets, divisor = ctx.saved_tensors
        scale = grad / divisor
        out = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ROWS_PER_BLOCK):
            stop = start + ROWS_PER_BLOCK
            target = targets[start:stop]
            valid = (target != ctx.ignore_index).unsqueeze(1)
            block = torch.softmax(logits[start:stop].float(), dim=-1)
            block.scatter_add_(1, target.clamp(min=0).unsqueeze(1),
                               torch.full_like(block[:, :1], -1.0))
            block.mul_(valid * scale)
            out[start:stop] = block
        return out, None, None, None


def lean_causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int,
                        num_items_in_batch: torch.Tensor | int | None = None,
                        ignore_index: int = -100, shift_labels: torch.Tensor | None = None,
                        **kwargs) -> torch.Tensor:
    """Drop-in for transformers' `ForCausalLMLoss` (same arguments, same value). Example:

    model.loss_function = lean_causal_lm_loss
    """
    if shift_labels is None:
        labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)
        shift_labels = labels[..., 1:]
    targets = shift_labels.reshape(-1).to(logits.device)
    logits = logits.reshape(-1, vocab_size)
    if num_items_in_batch is None:
        divisor = (targets != ignore_index).sum().float()
    else:
        divisor = torch.as_tensor(num_items_in_batch, dtype=torch.float32, device=logits.device)
    return _CrossEntropySum.apply(logits, targets, divisor, ignore_index)


def use_lean_loss(model: torch.nn.Module) -> None:
    """Make a transformers causal LM compute its loss with `lean_causal_lm_loss`."""
    base = getattr(model, "get_base_model", lambda: model)()
    if hasattr(type(base), "loss_function"):
        base.loss_function = lean_causal_lm_loss
