"""Proof runs on the nano base (pretrained 150 steps by the shared fixture): SFT raises the held-out
answers' likelihood, DPO raises held-out pair accuracy and log-prob margin.

Slow (CPU, OMP_NUM_THREADS=1, quiet machine): SFT ~40 s, DPO ~15-25 s, plus the shared nano base
(~60-100 s, built once per session and reused by the other alignment tests).

How the settings and margins were chosen (figures per seed in benchmarks/results/alignment_proof.md):

SFT on `add`, full fine-tuning, 600 steps, lr 3e-3, batch 16 (74 train sums, all 26 held-out sums).
The base never saw `<|im_end|>` nor the bare digit tokens the answers start with (LoRA trains only
the chat tokens' rows, see test_sft_tokens.py, hence full fine-tuning) and does not know the sums:
it scores 0.0 exact match on the held-out sums, and gives their reference answers (teacher-forced,
with the end-of-turn) a mean summed log-probability of -32.7 nats.

What the proof asserts, and why: held-out *exact match* after SFT depends on whether the 2-layer
model happens to generalise addition to unseen digit pairs, and that flips with the seed and with
the CPU kind (float reduction order): 0.35 / 0.27 / 0.27 / 0.62 for seeds 0/1/2/42 on an AVX2-only
EPYC, but 0.08 / 0.08 / 0.58 / 0.04 / 0.38 / 0.15 / 0.15 for seeds 0/1/2/3/4/5/42 on an AVX512-BF16
EPYC (Zen 4) — the test's own seed 0 at 0.08 there. No threshold above a format-only model (0.154)
holds on every kind, so exact match is reported, not asserted. The held-out *answer log-probability*
(`after/answer_logprob`, computed by the stage) is graded and moves far more than its spread: -1.06
to -3.23 after SFT over those 7 seeds on Zen 4 (from -32.7), so the thresholds (>= -8, and a gain
of >= 15 nats) sit ~5 nats below the worst seed and ~15 nats below the smallest gain.

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

import warnings

import pytest

from alignment._sft_fixtures import pretrained  # noqa: E402
from tunesmith.alignment.preference import dpo  # noqa: E402
from tunesmith.alignment.sft import sft  # noqa: E402

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
TRAIN = {"dtype": "fp32", "warmup_steps": 10, "logging_steps": 50, "save_steps": 10_000, "eval_steps": 10_000,
         "seed": 0}


@pytest.mark.slow
def test_sft_raises_heldout_answer_likelihood(tmp_path_factory, tmp_path):
    base = pretrained("nano", tmp_path_factory.getbasetemp())
    r = sft(model={"path": str(base)}, adapter={"method": "full"},
            tasks={"names": ["add"], "train_rows": 80, "eval_rows": 26},
            sft={"max_length": 64, "batching": "padding"},
            train=dict(TRAIN, max_steps=600, batch_size=16, lr=3e-3),
            run={"dir": str(tmp_path / "sft"), "sample_tokens": 0})
    m = r.metrics
    assert m["before/exact_match"] == 0.0
    assert m["before/answer_logprob"] < -20.0                        # -32.7 on Zen 4
    assert m["after/answer_logprob"] >= -8.0, m                      # -1.06 .. -3.23 over 7 seeds
    assert m["after/answer_logprob"] >= m["before/answer_logprob"] + 15.0, m   # gains 29.4 .. 31.6


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
