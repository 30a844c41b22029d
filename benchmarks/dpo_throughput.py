"""tunesmith DPO against TRL's DPOTrainer at its defaults and at its best configuration: same model,
same preference pairs, batch size and max length, each side a fresh subprocess (its own peak RSS),
sides alternating over `--rounds` (the median counts), real tokens counted the same way for
every side (`sft_throughput.Meter`: non-pad input ids of the forwards with gradients, i.e. the
policy's chosen+rejected batch, not a reference model's no-grad forward).

Sides (full fine-tuning, sigmoid loss):
- tunesmith: `tunesmith dpo` at its defaults (reference log-probs precomputed for full
  fine-tuning, pairs drawn grouped by length, `train.dtype: auto`);
- trl_fp32: `trl.DPOTrainer` with TRL's defaults (a reference copy run every step) and `bf16=False`;
- trl_shipped: TRL's defaults as shipped (`bf16=True`: bf16 autocast on CPU);
- trl_best: `precompute_ref_log_probs=True`, fp32 (no reference forward per step; TRL 1.16 has
  turned its `padding_free` off).
The precomputation runs when each trainer is built: outside the timed steps, for both sides that
do it.

Data: HH-RLHF harmless-base pairs from the shared corpora, as conversations (the shared prefix is
the prompt); without the shared folder, the embedded tasks' pairs.

    .venv/bin/python benchmarks/dpo_throughput.py --preset nano --rounds 2
    .venv/bin/python benchmarks/dpo_throughput.py --tiny
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_throughput import (CORPORA, _hh_messages, cli, finish_side, save_inputs, start_side, trl_side,  # noqa: E402
                            tunesmith_side)

SIDES = ("tunesmith", "trl_fp32", "trl_shipped", "trl_best")
TRL_SIDES = SIDES[1:]


def pairs(count: int, seed: int = 0) -> list[dict]:
    """`count` conversational pairs {prompt, chosen, rejected}: HH-RLHF pairs whose transcripts
    share everything but the last assistant turn (or the embedded tasks' pairs)."""
    rng = random.Random(seed)
    path = CORPORA / "hh_harmless_base_test.jsonl.gz"
    if path.is_file():
        out = []
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                c, r = _hh_messages(row["chosen"]), _hh_messages(row["rejected"])
                if c and r and c[:-1] == r[:-1] and c[-1] != r[-1]:
                    out.append({"prompt": c[:-1], "chosen": c[-1:], "rejected": r[-1:]})
        rows = rng.sample(out, min(count, len(out)))
    else:
        from tunesmith.alignment.toy_tasks import preference_rows

        rows = [{k: v for k, v in r.items() if k != "task"} for r in preference_rows(["add", "upper"], count)]
    return rows


def make_inputs(folder: Path, preset: str, rows: int, max_length: int) -> tuple[Path, Path]:
    data = pairs(rows)
    texts = [m["content"] for r in data for k in ("prompt", "chosen", "rejected") for m in r[k]
             if isinstance(r[k], list)] or [json.dumps(r) for r in data]
    return save_inputs(folder, preset, max_length, texts, data, "pairs.jsonl")


def run_side(side: str, model: str, data: str, a: argparse.Namespace, out: str) -> None:
    tok, meter, total_steps, work = start_side(side, model, a, out)
    if side == "tunesmith":
        from tunesmith.alignment.preference import dpo

        extra, _ = tunesmith_side(dpo, {"dpo": {"max_length": a.max_length}}, model, data, a, total_steps, work)
    else:
        import trl

        options = {"trl_fp32": {"bf16": False}, "trl_shipped": {},
                   "trl_best": {"bf16": False, "precompute_ref_log_probs": True}}
        extra = trl_side(trl.DPOConfig, trl.DPOTrainer, options[side], tok, model, data, a, total_steps, work)
    finish_side(meter, a, out, extra)


def main() -> None:
    cli(__doc__, __file__, SIDES, "tunesmith,trl_best", "pairs", run_side, make_inputs, "DPO throughput")


if __name__ == "__main__":
    main()
