"""The memory planner: exact parameter counts, the right components, budgets."""
from __future__ import annotations

import pytest

from tunesmith.adapters import AdapterConfig, apply, fitting, parse_size, plan, trainable_summary
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
    ckpt = plan(config, AdapterConfig(method="lora", gradient_checkpointing=True), batch_size=4, seq_len=256)
    eight = plan(config, AdapterConfig(method="full", optimizer="adamw_8bit"), batch_size=4, seq_len=256)
    assert full.parts["optimizer"] == 8 * full.settings["total_params"]
    assert eight.parts["optimizer"] == 2 * full.settings["total_params"]
    assert lora.parts["gradients"] < full.parts["gradients"] / 10
    assert qlora.parts["weights"] < lora.parts["weights"]
    assert ckpt.parts["activations"] < lora.parts["activations"]
    double = plan(config, AdapterConfig(method="lora"), batch_size=8, seq_len=256)
    assert double.parts["activations"] == pytest.approx(2 * lora.parts["activations"], rel=1e-6)


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
