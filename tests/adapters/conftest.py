"""Shared tiny models and a few-step training loop for the adapter tests."""
from __future__ import annotations

import warnings

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from tunesmith.adapters.config import AdapterConfig
from tunesmith.adapters.optim import build_optimizer
from tunesmith.pretraining.presets import build_model

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")


def lm_batch(vocab: int = 2048, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (4, 16), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def cls_batch(vocab: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
    """Eight rows in three classes; each class mostly repeats its own token, so it is learnable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(8) % 3
    ids = torch.randint(3, vocab, (8, 12), generator=g)
    ids[:, 1::2] = (10 + 7 * labels)[:, None]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def tiny_bert(num_labels: int = 3) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        initializer_range=0.2)
    return BertForSequenceClassification(config)


def nano(family: str = "llama", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(family, "nano", **overrides)


def train(model: torch.nn.Module, adapter: AdapterConfig, batch: dict, steps: int = 8,
          lr: float = 1e-2) -> list[float]:
    """A few optimizer steps on one batch; the losses, first to last."""
    torch.manual_seed(0)
    model.train()
    opt = build_optimizer(model, adapter, lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.fixture
def nano_folder(tmp_path):
    """A saved nano llama (safetensors) to load quantized."""
    path = tmp_path / "base"
    nano("llama").save_pretrained(path)
    return path
