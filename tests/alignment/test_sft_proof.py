"""Proof runs on the nano base (pretrained 150 steps by the shared fixture): SFT raises held-out
exact match, DPO raises held-out pair accuracy and log-prob margin.

Slow (CPU, OMP_NUM_THREADS=1, quiet machine): SFT ~40 s, DPO ~15-25 s, plus the shared nano base
(~60-100 s, built once per session and reused by the other alignment tests).

How the settings and margins were chosen (figures per seed in benchmarks/results/alignment_proof.md):

SFT on `add`, full fine-tuning, 600 steps, lr 3e-3, batch 16 (74 train sums, all 26 held-out sums).
The base never saw `<|im_end|>` nor the bare digit tokens the answers start with (LoRA trains only
the chat tokens' rows, see test_sft_tokens.py, hence full fine-tuning) and does not know the sums:
it scores 0.0 on the held-out sums. 150-200 steps only teach the answer format (~0.04-0.15); by ~600
steps the model generalises addition to unseen digit pairs. `reverse` and `brackets` stay at 0-0.06
(the 2-layer nano base cannot copy). Measured held-out exact match after training, seeds 0/1/2/42:
0.346 / 0.269 / 0.269 / 0.615 (7 to 16 of 26), from 0.0. Threshold 0.2 (6 of 26): above what a model
that learned only the format could score (the most frequent held-out sum, answered every time, is
right on 4 of 26 = 0.154) and below every seed observed.

DPO on `brackets` + `upper` pairs (chosen "[fox]"/"FOX", rejected "fox"), full fine-tuning,
100 steps, lr 1e-3, beta 0.1. The base prefers the rejected answer on 34 of 35 held-out pairs
(pair accuracy 0.029, mean log-prob margin -11.6). After training, seeds 0/1/2: pair accuracy 1.0 on
all, margin +51.5 / +50.1 / +49.4, TRL's implicit reward margin 6.42 / 6.27 / 6.20 (reward accuracy
1.0). Thresholds (accuracy +0.5, margin +20 log-prob units, reward margin > 2, reward accuracy >= 0.9)
sit at about half of the smallest observed gain, and far above any seed-to-seed spread (< 2 units).
`add` pairs (off-by-one rejected) were the earlier choice: there DPO has to generalise arithmetic
and the gain is within noise (0.30 -> 0.275 in one run).
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
TRAIN = {"dtype": "fp32", "warmup_steps": 10, "logging_steps": 50, "save_steps": 10_000, "eval_steps": 10_000,
         "seed": 0}


@pytest.mark.slow
def test_sft_raises_heldout_exact_match(tmp_path_factory, tmp_path):
    base = pretrained("nano", tmp_path_factory.getbasetemp())
    r = sft(model={"path": str(base)}, adapter={"method": "full"},
            tasks={"names": ["add"], "train_rows": 80, "eval_rows": 26},
            sft={"max_length": 64, "batching": "padding"},
            train=dict(TRAIN, max_steps=600, batch_size=16, lr=3e-3),
            run={"dir": str(tmp_path / "sft"), "sample_tokens": 0})
    assert r.metrics["before/exact_match"] == 0.0
    assert r.metrics["after/exact_match"] >= 0.2        # observed 0.27-0.62 over 4 seeds (docstring)


@pytest.mark.slow
def test_dpo_raises_heldout_pair_accuracy_and_margin(tmp_path_factory, tmp_path):
    base = pretrained("nano", tmp_path_factory.getbasetemp())
    r = dpo(model={"path": str(base)}, adapter={"method": "full"},
            tasks={"names": ["brackets", "upper"], "train_rows": 160, "eval_rows": 40},
            dpo={"max_length": 64, "beta": 0.1}, train=dict(TRAIN, max_steps=100, batch_size=16, lr=1e-3),
            run={"dir": str(tmp_path / "dpo"), "sample_tokens": 0})
    m = r.metrics
    assert m["before/pair_accuracy"] < 0.2                # the base prefers the rejected answers
    assert m["after/pair_accuracy"] >= m["before/pair_accuracy"] + 0.5       # observed +0.97 on 3 seeds
    assert m["after/logp_margin"] > m["before/logp_margin"] + 20.0           # observed +61 .. +63
    assert m["eval_rewards/margins"] > 2.0 and m["eval_rewards/accuracies"] >= 0.9   # observed 6.2-6.4, 1.0
