"""Multi-token prediction (Gloeckle et al. 2024, "Better & Faster Large Language Models via
Multi-token Prediction"): n output heads on a shared trunk, head k predicting token t+k,
the loss summed over heads.

Head 1 is the model's own next-token path (trunk -> final norm -> lm_head), so the saved
model is a plain next-token model for `AutoModelForCausalLM`. Heads 2..n are small
independent residual MLP blocks on the trunk's final hidden state, sharing the unembedding
(lm_head). They are saved beside the model as `mtp_heads.safetensors` + `mtp_heads.json`,
so training can continue and self-speculative decoding can use them later.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.errors import UserError
from .packing import IGNORE_INDEX

HEADS_FILE, HEADS_CONFIG = "mtp_heads.safetensors", "mtp_heads.json"


class ExtraHead(nn.Module):
    """h -> norm(h + W2 silu(W1 norm(h))): one extra prediction head's own layer."""

    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.norm_in = nn.LayerNorm(hidden)
        self.up = nn.Linear(hidden, inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)
        self.norm_out = nn.LayerNorm(hidden)
        nn.init.normal_(self.up.weight, std=0.02)
        nn.init.zeros_(self.down.weight)  # starts as a copy of head 1's input

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm_out(h + self.down(F.silu(self.up(self.norm_in(h)))))


def attach_heads(model: nn.Module, n_heads: int) -> nn.ModuleList:
    """Give `model` n_heads - 1 extra heads as `model.mtp_heads` (so the optimizer and the
    Trainer's checkpoints include them)."""
    hidden = model.config.hidden_size
    heads = nn.ModuleList(ExtraHead(hidden, 2 * hidden) for _ in range(n_heads - 1))
    model.mtp_heads = heads
    return heads


def shifted_ce(logits: torch.Tensor, labels: torch.Tensor, offset: int) -> torch.Tensor:
    """Cross-entropy of position t's logits against the label at t + offset (the last `offset`
    positions have none). The labels move, not the logits: slicing the [batch, seq, vocab] logits
    would copy them (and their gradient) every step."""
    target = F.pad(labels[:, offset:], (0, offset), value=IGNORE_INDEX)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def causal_lm_losses(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                     attention_mask: torch.Tensor | None = None,
                     heads: nn.ModuleList | None = None) -> list[torch.Tensor]:
    """One loss per head (a single loss for a plain next-token model). `model` may be a
    DDP/accelerate wrapper: the forward goes through it; `heads` are the extra heads."""
    # use_cache=False: HF decoders otherwise build a KV cache in training forwards too (~1 % of a step)
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=bool(heads), use_cache=False)
    losses = [shifted_ce(out.logits, labels, 1)]
    if heads:
        hidden = out.hidden_states[-1]  # after the final norm, for every preset family
        unembed = _unwrap(model).get_output_embeddings()
        losses += [shifted_ce(unembed(head(hidden)), labels, k) for k, head in enumerate(heads, start=2)]
    return losses


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def save_heads(model: nn.Module, folder: str | Path) -> None:
    heads = getattr(model, "mtp_heads", None)
    if heads is None:
        return
    state = {k: v.detach().contiguous().cpu() for k, v in heads.state_dict().items()}
    save_file(state, str(Path(folder) / HEADS_FILE), metadata={"format": "pt"})
    (Path(folder) / HEADS_CONFIG).write_text(json.dumps({"n_heads": len(heads) + 1,
                                                          "hidden": model.config.hidden_size}))


def load_heads(model: nn.Module, folder: str | Path, n_heads: int) -> bool:
    """Restore extra heads saved beside a model; False if the folder has none."""
    path = Path(folder) / HEADS_FILE
    if not path.exists():
        return False
    saved = json.loads((Path(folder) / HEADS_CONFIG).read_text())["n_heads"]
    if saved != n_heads:
        raise UserError(f"model has {saved} prediction heads but the config asks for {n_heads}",
                        file=path, field="objective.n_heads", fix=f"set objective.n_heads: {saved}")
    model.mtp_heads.load_state_dict(load_file(str(path)))
    return True
