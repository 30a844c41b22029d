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
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_throughput import CORPORA, REPO, Meter, _hh_messages  # noqa: E402

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
    import torch

    from tunesmith.data.chat import CHATML_TEMPLATE
    from tunesmith.pretraining.presets import build_model
    from tunesmith.pretraining.tokenizer import train_tokenizer

    data = pairs(rows)
    texts = [m["content"] for r in data for k in ("prompt", "chosen", "rejected") for m in r[k]
             if isinstance(r[k], list)] or [json.dumps(r) for r in data]
    tok = train_tokenizer(texts, vocab_size=1024 if preset == "nano" else 4096)
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    model = build_model("llama", preset, vocab=len(tok), context=max_length, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return folder / "model", path


def run_side(side: str, model: str, data: str, a: argparse.Namespace, out: str) -> None:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    meter = Meter(tok.pad_token_id, len(tok))
    total_steps = a.warmup + a.steps + 1
    work = Path(out).parent / f"{side}-run"
    if side == "tunesmith":
        from tunesmith.alignment.preference import dpo

        r = dpo(model={"path": model}, adapter={"method": "full"}, data={"inputs": [{"path": data}]},
                dpo={"max_length": a.max_length},
                train={"max_steps": total_steps, "batch_size": a.batch, "warmup_steps": 0, "save_steps": 10_000,
                       "eval_steps": 10_000},
                run={"dir": str(work), "overwrite": True, "sample_tokens": 0})
        env = json.loads((r.run_dir / "environment.json").read_text())
        extra = {"dtype": env.get("dtype"), "train_seconds": r.metrics["train_seconds"]}
    else:
        import trl
        from datasets import load_dataset
        from transformers import AutoModelForCausalLM

        ds = load_dataset("json", data_files=data, split="train")
        m = AutoModelForCausalLM.from_pretrained(model)
        options = {"trl_fp32": {"bf16": False}, "trl_shipped": {},
                   "trl_best": {"bf16": False, "precompute_ref_log_probs": True}}
        args = trl.DPOConfig(output_dir=str(work), max_steps=total_steps, per_device_train_batch_size=a.batch,
                             max_length=a.max_length, report_to=[], use_cpu=not torch.cuda.is_available(),
                             save_strategy="no", **options[side])
        trainer = trl.DPOTrainer(model=m, args=args, train_dataset=ds, processing_class=tok)
        extra = {"dtype": "bf16" if args.bf16 else "fp32", "train_seconds": trainer.train().metrics["train_runtime"]}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({**meter.result(a.warmup, a.steps), "peak_rss_mb": rss, **extra,
                                     "torch_threads": torch.get_num_threads()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=["nano", "small"], default="nano")
    p.add_argument("--steps", type=int, default=20, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--rows", type=int, default=600)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--rounds", type=int, default=1, help="rounds of all sides, order reversed every other round")
    p.add_argument("--sides", default=",".join(SIDES))
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every side (see sft_throughput)")
    p.add_argument("--tiny", action="store_true",
                   help="a quick check: 48 pairs, max length 128, 2 timed steps, tunesmith and trl_best only")
    p.add_argument("--side", choices=SIDES)
    p.add_argument("--model"), p.add_argument("--data"), p.add_argument("--out")
    a = p.parse_args()
    if a.tiny:
        a.rows, a.max_length, a.steps, a.warmup, a.preset, a.sides = 48, 128, 2, 1, "nano", "tunesmith,trl_best"
    if a.side:
        return run_side(a.side, a.model, a.data, a, a.out)
    sides = [s for s in a.sides.split(",") if s]
    folder = Path(tempfile.mkdtemp(prefix="dpo-bench-"))
    model, data = make_inputs(folder, a.preset, a.rows, a.max_length)
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    for rnd in range(a.rounds):
        for side in (sides if rnd % 2 == 0 else sides[::-1]):
            out = folder / f"{side}-{rnd}.json"
            cmd = [sys.executable, __file__, "--side", side, "--model", str(model), "--data", str(data),
                   "--out", str(out), "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.batch),
                   "--max-length", str(a.max_length), "--preset", a.preset]
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=env,
                           stderr=None if a.tiny else subprocess.DEVNULL)
            runs[side].append(json.loads(out.read_text()))
    table = {s: {k: statistics.median(x[k] for x in r) for k in ("tokens_per_s", "peak_rss_mb", "padding_fraction")}
             | {"dtype": r[0]["dtype"]} for s, r in runs.items()}
    trl_sides = [s for s in sides if s in TRL_SIDES]
    best = max(trl_sides, key=lambda s: table[s]["tokens_per_s"]) if trl_sides else None
    print(f"DPO throughput: preset {a.preset}, {a.rows} pairs, batch {a.batch} pairs, max length {a.max_length}, "
          f"{a.steps} timed steps after {a.warmup}, {a.rounds} round(s), torch threads {runs[sides[0]][0]['torch_threads']}")
    print(f"| side | dtype | real tokens/s | padding | peak RSS MB | tokens/s vs {best} | RSS vs {best} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s, row in table.items():
        ratio = row["tokens_per_s"] / table[best]["tokens_per_s"] if best else float("nan")
        rss = row["peak_rss_mb"] / table[best]["peak_rss_mb"] if best else float("nan")
        print(f"| {s} | {row['dtype']} | {row['tokens_per_s']:,.0f} | {row['padding_fraction']:.1%} | "
              f"{row['peak_rss_mb']:,.0f} | {ratio:.2f}x | {rss:.2f}x |")
    print(json.dumps({"table": table, "fastest_trl": best}))


if __name__ == "__main__":
    main()
