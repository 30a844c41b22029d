"""`train.gradient_checkpointing: auto`: the rule (core.device.should_checkpoint), and the decision
on a real model (lifecycle.choose_checkpointing): measured activations against the training state,
recompute switched on in the model, gradients unchanged by it."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from tunesmith.core import device
from tunesmith.core.device import CHECKPOINT_MIN_BYTES, should_checkpoint
from tunesmith.core.train_config import TrainSection

MiB = 2 ** 20


def test_rule():
    assert not should_checkpoint(200 * MiB, 1 * MiB)                   # small activations: never worth the time
    assert should_checkpoint(300 * MiB, 100 * MiB)                     # they are most of the footprint
    assert not should_checkpoint(300 * MiB, 1000 * MiB)                # the weights and optimizer dominate
    assert should_checkpoint(300 * MiB, 1000 * MiB, available=1200 * MiB)  # ... but both do not fit
    assert should_checkpoint(CHECKPOINT_MIN_BYTES, CHECKPOINT_MIN_BYTES)


def _lora():
    from tunesmith.adapters import apply
    from tunesmith.pretraining.presets import build_model

    torch.manual_seed(0)
    return apply(build_model("llama", "nano", vocab=512), {"method": "lora", "rank": 4})


def _grads(model, batch):
    torch.manual_seed(2)  # the same dropout masks for both models (recompute replays its own)
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_auto_measures_then_recomputes_with_the_same_gradients(monkeypatch, tmp_path):
    from tunesmith.lifecycle import choose_checkpointing

    monkeypatch.setenv("TUNESMITH_CACHE_DIR", str(tmp_path))
    ids = torch.randint(0, 512, (4, 96), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "labels": ids}
    model = _lora()
    plain = copy.deepcopy(model)
    loaded = SimpleNamespace(model=model, probe_batch=batch)
    train = TrainSection(batch_size=4)

    off = choose_checkpointing(train, loaded)  # a nano model's activations: far under the floor
    assert off["enabled"] is False and 0 < off["activations_mb"] < CHECKPOINT_MIN_BYTES / MiB
    assert not model.get_base_model().is_activation_checkpointing

    monkeypatch.setattr(device, "CHECKPOINT_MIN_BYTES", 0)  # as a model whose activations pass the floor
    on = choose_checkpointing(train, loaded)
    assert on["activations_mb"] == off["activations_mb"]     # measured once (cached per machine, model, shape)
    # measured on 2 of the 4 rows, scaled: within a tenth of measuring all 4
    from tunesmith.core.device import measure_activations
    whole = measure_activations(plain, batch, "fp32")["memory_mb"]
    assert abs(off["activations_mb"] / whole - 1) < 0.1
    assert on["enabled"] is True and on["activations_mb"] > on["state_mb"]  # LoRA: a frozen base, tiny state
    assert model.get_base_model().is_activation_checkpointing
    model.train(), plain.train()
    ours, reference = _grads(model, batch), _grads(plain, batch)
    assert ours.keys() == reference.keys() and ours
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], atol=1e-6, rtol=1e-5, msg=name)

    # a stage's own decision is kept, and an explicit setting is never second-guessed
    fresh = _lora()
    decided = {"enabled": False, "requested": "auto", "activations_mb": 0.5}
    assert choose_checkpointing(train, SimpleNamespace(model=fresh, checkpointing=decided)) is decided
    assert choose_checkpointing(TrainSection(gradient_checkpointing=False), SimpleNamespace(model=fresh)) is None
    assert not fresh.get_base_model().is_activation_checkpointing


@pytest.mark.parametrize("given, expected", [("auto", "auto"), ("true", True), ("false", False)])
def test_the_flag_takes_auto_and_true_and_false(given, expected):
    from tunesmith.cli.flags import Parser, add_config_flags, overrides

    parser = Parser(prog="t")
    add_config_flags(parser, TrainSection)
    args, extra = parser.parse_known_args(["--gradient_checkpointing", given])
    assert TrainSection(**overrides(args, extra)).gradient_checkpointing == expected
    bare, extra = parser.parse_known_args(["--gradient_checkpointing", "--lr", "0.1"])  # a bare switch: true
    assert TrainSection(**overrides(bare, extra)).gradient_checkpointing is True


def test_without_a_stage_batch_a_short_step_is_scaled_to_the_full_length(monkeypatch, tmp_path):
    """Stages that give no batch are measured on a 64-token row of random tokens, scaled to the
    model's context (up to 512): within a quarter of measuring the full length (activations grow
    linearly with the tokens under sdpa)."""
    from tunesmith.core.device import measure_activations
    from tunesmith.lifecycle import SHORT_PROBE, choose_checkpointing

    monkeypatch.setenv("TUNESMITH_CACHE_DIR", str(tmp_path))
    model = _lora()
    length = min(512, model.config.max_position_embeddings)
    assert length > SHORT_PROBE
    record = choose_checkpointing(TrainSection(batch_size=2), SimpleNamespace(model=model))
    ids = torch.randint(0, 512, (2, length), generator=torch.Generator().manual_seed(0))
    full = measure_activations(model, {"input_ids": ids}, "fp32")["memory_mb"]
    assert record["enabled"] is False and abs(record["activations_mb"] / full - 1) < 0.25
