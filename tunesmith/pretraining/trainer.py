"""The Hugging Face Trainer, taught multi-token losses, per-head logging and curriculum sampling."""
from __future__ import annotations

import torch
from transformers import Trainer

from ..compat import CustomSampler
from .mtp import causal_lm_losses


class PretrainTrainer(CustomSampler, Trainer):
    """`Trainer` whose loss is the sum of the prediction heads' losses (one head: plain
    next-token loss). Evaluation reports head 1 (next-token) loss, so eval perplexity is
    comparable across objectives. Each head's training loss is logged as `loss_head_k`.

    Per step it does no more than a plain PyTorch loop needs: the model gets no attention mask
    (packed blocks are padded only on the right, after their real tokens, so causal attention
    alone gives every real token the same output, and sdpa runs its `is_causal` path with no mask
    built), and the FLOP count the Trainer keeps is computed from a parameter count taken once."""

    loss_is_scaled_for_ga = False  # per-batch mean: the Trainer divides by accumulation steps

    def __init__(self, *args, curriculum_sampler=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.custom_sampler = curriculum_sampler
        self._head_sums: list[float] = []
        self._head_count = 0
        self._flops_per_token: int | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        heads = getattr(self.model, "mtp_heads", None) if model.training else None
        losses = causal_lm_losses(model, inputs["input_ids"], inputs["labels"], heads=heads)
        if model.training:
            if len(losses) > 1:  # per-head losses are logged only for several heads
                values = [l.detach().item() for l in losses]
                if not self._head_sums:
                    self._head_sums = [0.0] * len(values)
                self._head_sums = [s + v for s, v in zip(self._head_sums, values)]
                self._head_count += 1
                loss = torch.stack(losses).sum()
            else:
                loss = losses[0]
        else:
            loss = losses[0]
        return (loss, {"loss": loss}) if return_outputs else loss

    def floating_point_ops(self, inputs) -> int:
        """What `Trainer.floating_point_ops` returns (6 x tokens x non-embedding parameters), without
        walking the parameters every step."""
        if self._flops_per_token is None:
            self._flops_per_token = 6 * self.model.num_parameters(exclude_embeddings=True) \
                if hasattr(self.model, "num_parameters") else 0
        ids = inputs.get(getattr(self.model, "main_input_name", "input_ids"))
        return self._flops_per_token * ids.numel() if ids is not None else 0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._head_count and len(self._head_sums) > 1:
            for k, s in enumerate(self._head_sums, start=1):
                logs[f"loss_head_{k}"] = round(s / self._head_count, 4)
        if "loss" in logs:
            self._head_sums, self._head_count = [], 0
        super().log(logs, start_time)
