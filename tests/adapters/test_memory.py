"""What the memory fixes do: lean loss equals the stock loss, no checkpoint left mapped."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from tunesmith.adapters import AdapterConfig, apply, load_base
from tunesmith.adapters import loss as lean
from tunesmith.adapters.allocator import return_freed_memory

from .conftest import lm_batch, nano


@pytest.mark.parametrize("num_items", [None, 7])
def test_lean_loss_equals_stock_loss_and_gradient(monkeypatch, num_items):
    monkeypatch.setattr(lean, "ROWS_PER_BLOCK", 5)  # several blocks, the last one partial
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 50, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9))
    labels[0, 3] = -100
    stock = ForCausalLMLoss(logits, labels, 50, num_items_in_batch=num_items)
    ours = lean.lean_causal_lm_loss(logits, labels, 50, num_items_in_batch=num_items)
    assert ours.item() == pytest.approx(stock.item(), rel=1e-6)
    (g_stock,) = torch.autograd.grad(stock, logits)
    (g_ours,) = torch.autograd.grad(ours, logits)
    torch.testing.assert_close(g_ours, g_stock, rtol=1e-5, atol=1e-7)


def test_apply_installs_the_lean_loss_with_the_same_value():
    batch = lm_batch()
    stock = nano("llama")(**batch).loss
    model = apply(nano("llama"), AdapterConfig(method="lora", rank=4, dropout=0.0))
    assert model.get_base_model().loss_function is lean.lean_causal_lm_loss
    assert model(**batch).loss.item() == pytest.approx(stock.item(), rel=1e-5)


def _mapped(path: Path) -> bool:
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_quantized_load_leaves_no_checkpoint_mapped(nano_folder):
    cfg = AdapterConfig(method="qlora", rank=4)
    model = load_base(nano_folder, cfg)
    gc.collect()
    assert not _mapped(nano_folder / "model.safetensors")
    assert model.get_input_embeddings().weight.dtype == torch.float32


def test_return_freed_memory_is_safe_to_call_twice():
    assert return_freed_memory() == return_freed_memory()
