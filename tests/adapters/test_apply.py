"""Every adapter method trains on a nano model and touches only its own weights."""
from __future__ import annotations

import pytest
import torch

from tunesmith.adapters import AdapterConfig, apply, trainable_summary
from tunesmith.adapters.config import LORA_FAMILY

from .conftest import cls_batch, lm_batch, nano, tiny_bert, train

ALL_METHODS = ["lora", "dora", "rslora", "pissa", "olora", "lora_fa", "vera", "ia3",
               "prompt_tuning", "prefix_tuning", "full"]
# prompt methods learn a few embeddings: they need a larger step to move in 8 steps
LR = {"prompt_tuning": 0.3, "prefix_tuning": 3e-2, "vera": 3e-2, "ia3": 3e-2, "full": 3e-3}


def frozen_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_method_trains_and_only_adapter_weights_change(method):
    model = nano("llama")
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = AdapterConfig(method=method, rank=4)
    peft_model = apply(model, cfg)
    frozen = frozen_snapshot(peft_model)
    trainable = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    losses = train(peft_model, cfg, lm_batch(), lr=LR.get(method, 1e-2))
    assert losses[-1] < losses[0] - 0.05, losses
    params = dict(peft_model.named_parameters())
    for name, before in frozen.items():
        assert torch.equal(params[name], before), f"{name} changed but is not an adapter weight"
    assert any(not torch.equal(params[n], v) for n, v in trainable.items())
    if method == "full":
        assert frozen == {}
    else:
        assert trainable_summary(peft_model)["percent"] < 10
    if method in ("lora", "dora", "rslora", "vera", "ia3"):
        # the base is untouched by these (pissa/olora rewrite W as a residual by design)
        base = peft_model.get_base_model()
        for name, p in base.named_parameters():
            key = name.replace(".base_layer", "")
            if key in original:
                assert torch.equal(p, original[key]), name


@pytest.mark.parametrize("family", ["gpt2", "neox"])
@pytest.mark.parametrize("method", ["lora", "ia3", "prefix_tuning"])
def test_other_decoder_families_train(family, method):
    cfg = AdapterConfig(method=method, rank=4)
    model = apply(nano(family), cfg)
    losses = train(model, cfg, lm_batch(), lr=LR.get(method, 1e-2))
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning", "prefix_tuning", "vera"])
def test_encoder_classification_keeps_head_trainable(method):
    cfg = AdapterConfig(method=method, rank=4, task="seq_cls")
    model = apply(tiny_bert(), cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("classifier" in n and "modules_to_save" in n for n in trainable)
    if method in LORA_FAMILY + ("ia3", "vera"):
        assert any("pooler" in n and "modules_to_save" in n for n in trainable)
        # the pooler is trained fully, so it must not also carry an adapter
        assert not any("pooler" in n and ("lora_" in n or "ia3_" in n) for n in trainable)
    losses = train(model, cfg, cls_batch(), steps=10, lr=1e-2)
    assert losses[-1] < losses[0] - 0.05, losses


def test_decoder_classification_score_head_is_trained():
    from transformers import LlamaForSequenceClassification
    base = nano("llama")
    config = base.config
    config.num_labels = 2
    torch.manual_seed(0)
    model = apply(LlamaForSequenceClassification(config), AdapterConfig(task="seq_cls", rank=4))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("score.modules_to_save" in n for n in names)
    assert any("lora_A" in n for n in names)


def test_gradient_checkpointing_gives_same_gradients():
    grads = []
    for ckpt in (False, True):
        cfg = AdapterConfig(rank=4, dropout=0.0, init="gaussian")
        torch.manual_seed(1)
        model = apply(nano("llama"), cfg, gradient_checkpointing=ckpt)
        model.train()
        model(**lm_batch()).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert model.get_base_model().is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_8bit_optimizer_trains():
    cfg = AdapterConfig(rank=4, optimizer="adamw_8bit")
    model = apply(nano("llama"), cfg)
    losses = train(model, cfg, lm_batch())
    assert losses[-1] < losses[0] - 0.05
