"""The memory planner: exact parameter counts, the right components, budgets."""
from __future__ import annotations

import pytest

from tunesmith.adapters import (AdapterConfig, apply, find_linear_targets, fitting, parse_size, plan,
                                trainable_summary)
from tunesmith.adapters import planner
from tunesmith.adapters.planner import GiB
from tunesmith.core.errors import UserError
from tunesmith.pretraining.presets import count_parameters

from .conftest import nano


def test_parameter_counts_match_the_real_model():
    model = nano("llama")
    p = plan(model.config, AdapterConfig(method="full"), batch_size=1, seq_len=8)
    assert p.settings["total_params"] == count_parameters(model)
    assert p.parts["weights"] == 4 * count_parameters(model)
    for method in ("lora", "dora", "ia3"):
        cfg = AdapterConfig(method=method, rank=4)
        planned = plan(model.config, cfg).settings["trainable_params"]
        assert planned == trainable_summary(apply(nano("llama"), cfg))["trainable"], method


def test_components_move_the_right_way():
    config = nano("llama", layers=4, hidden=256, heads=4, intermediate=768).config
    full = plan(config, AdapterConfig(method="full"), batch_size=4, seq_len=256)
    lora = plan(config, AdapterConfig(method="lora"), batch_size=4, seq_len=256)
    qlora = plan(config, AdapterConfig(method="qlora"), batch_size=4, seq_len=256)
    ckpt = plan(config, AdapterConfig(method="lora"), batch_size=4, seq_len=256, gradient_checkpointing=True)
    assert lora.phases["step"] < full.phases["step"] / 10
    assert qlora.parts["weights"] < lora.parts["weights"]
    assert ckpt.phases["activations"] < lora.phases["activations"]
    double = plan(config, AdapterConfig(method="lora"), batch_size=8, seq_len=256)
    assert double.phases["activations"] == pytest.approx(2 * lora.phases["activations"], rel=1e-6)
    for p in (full, lora, qlora, ckpt):
        assert p.total == sum(p.parts.values()) + max(p.phases.values())


def _shapes():
    model = nano("llama", layers=2, hidden=128, heads=4, kv_heads=2, intermediate=384)
    sizes = [p.numel() for p in model.parameters()]
    linears = find_linear_targets(model)
    return model.config, sizes, linears


def test_weights_and_optimizer_state_arithmetic():
    config, sizes, linears = _shapes()
    total, block = sum(sizes), sum(t.in_features * t.out_features for t in linears)
    p = plan(config, AdapterConfig(method="full"), batch_size=1, seq_len=8)
    assert p.parts["weights"] == 4 * total and p.parts["optimizer"] == 8 * total
    # 8-bit AdamW: 2 bytes + two fp32 absmax per 256 elements; tensors under 4096 stay 32-bit
    eight = plan(config, AdapterConfig(method="full", optimizer="adamw_8bit"), batch_size=1, seq_len=8)
    assert eight.parts["optimizer"] == int(sum(n * (2 + 8 / 256) if n >= 4096 else 8 * n for n in sizes))
    # NF4 with double quantization: half a byte, a uint8 absmax per 64, an fp32 per 256 blocks;
    # embeddings, norms and the head stay fp32
    q = plan(config, AdapterConfig(method="qlora"), batch_size=1, seq_len=8)
    assert q.parts["weights"] == int(4 * (total - block) + (0.5 + 1 / 64 + 4 / (64 * 256)) * block)
    single = plan(config, AdapterConfig(method="qlora", double_quant=False), batch_size=1, seq_len=8)
    assert single.parts["weights"] == int(4 * (total - block) + (0.5 + 4 / 64) * block)
    int8 = plan(config, AdapterConfig(method="lora", quantize="int8"), batch_size=1, seq_len=8)
    assert int8.parts["weights"] == int(4 * (total - block) + block + 4 * sum(t.out_features for t in linears))


def test_activation_and_step_terms():
    config, sizes, linears = _shapes()
    h, kv, inter, layers, vocab = 128, 64, 384, 2, config.vocab_size
    tokens = 2 * 16
    logits = 2 * 4 * vocab * tokens  # the logits and their gradient
    full = plan(config, AdapterConfig(method="full"), batch_size=2, seq_len=16)
    per_layer = 4 * (8 * h + 2 * kv + 4 * inter)
    assert full.phases["activations"] == int(tokens * (per_layer * layers + 4 * 3.3 * h) + logits)
    assert full.phases["step"] == 4 * sum(sizes) + 2 * 4 * max(sizes)  # grads + AdamW temporaries
    lora = plan(config, AdapterConfig(method="lora", dropout=0.0), batch_size=2, seq_len=16)
    assert lora.phases["activations"] == int(tokens * (4 * (6 * h + 2 * kv + 4 * inter) * layers + 4 * h)
                                             + logits)
    dropout = plan(config, AdapterConfig(method="lora", dropout=0.1), batch_size=2, seq_len=16)
    inputs = sum(t.in_features for t in linears)
    assert dropout.phases["activations"] - lora.phases["activations"] == pytest.approx(
        tokens * planner.DROPOUT_BYTES * inputs, abs=2)
    int8 = plan(config, AdapterConfig(method="lora", dropout=0.0, quantize="int8"), batch_size=2, seq_len=16)
    assert int8.phases["activations"] - lora.phases["activations"] == pytest.approx(
        tokens * planner.INT8_INPUT_BYTES * inputs, abs=2)  # bitsandbytes keeps each input
    ckpt = plan(config, AdapterConfig(method="lora", dropout=0.0), batch_size=2, seq_len=16,
                gradient_checkpointing=True)
    recompute = 2 * tokens * 4 * (6 * h + 2 * kv + 4 * inter)
    assert ckpt.phases["activations"] == int(tokens * (4 * h * layers + 4 * h) + max(logits, recompute))


def test_fitting_puts_settings_under_budget_first(nano_folder):
    totals = sorted(p.total for p in fitting(nano_folder, "1GB", batch_size=2, seq_len=64))
    budget = totals[8]  # half the settings fit
    plans = fitting(nano_folder, budget, batch_size=2, seq_len=64)
    assert len(plans) == 16
    fits = [p.fits(budget) for p in plans]
    assert fits == sorted(fits, reverse=True) and any(fits) and not all(fits)
    assert "total" in plans[0].table()


def test_parse_size_and_bad_inputs(tmp_path):
    assert parse_size("16GB") == 16 * GiB and parse_size("512MiB") == 512 * 2**20
    with pytest.raises(UserError, match='cannot read memory size "lots"'):
        parse_size("lots")
    with pytest.raises(UserError, match="no config.json"):
        plan(tmp_path)


def test_auto_checkpointing_plans_what_the_stage_decides():
    """`gradient_checkpointing: auto` plans recompute where the planned activations pass the stage's
    rule (>= 256 MiB and at least the weights + gradients + optimizer state) and not where they do not."""
    from tunesmith.core.device import should_checkpoint

    config = nano("llama", layers=4, hidden=256, heads=4, intermediate=768).config
    for batch, seq, expected in ((8, 1024, True), (1, 64, False)):
        auto = plan(config, AdapterConfig(method="lora"), batch_size=batch, seq_len=seq, gradient_checkpointing="auto")
        kept = plan(config, AdapterConfig(method="lora"), batch_size=batch, seq_len=seq)
        forced = plan(config, AdapterConfig(method="lora"), batch_size=batch, seq_len=seq, gradient_checkpointing=True)
        state = sum(v for k, v in kept.parts.items() if k != "runtime") + kept.phases["step"]
        assert should_checkpoint(kept.phases["activations"], state) is expected
        assert auto.settings["checkpointed"] is expected and auto.settings["gradient_checkpointing"] == "auto"
        assert auto.total == (forced if expected else kept).total
