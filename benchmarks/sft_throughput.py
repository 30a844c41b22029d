"""tunesmith SFT against TRL's SFTTrainer at its defaults and at its best configuration: same model,
same mixed-length chat rows, same batch size and max length, each side a fresh subprocess (its own
peak RSS), sides alternating over `--rounds` (the median counts), real tokens counted the same way
for every side.

Sides (full fine-tuning):
- tunesmith: `tunesmith sft` at its defaults (`sft.batching: auto`, `train.dtype: auto`);
- trl_fp32: `trl.SFTTrainer` with TRL's defaults and `bf16=False`;
- trl_shipped: TRL's defaults as shipped (`bf16=True`: bf16 autocast on CPU);
- trl_packing: TRL's packing path, `packing=True, packing_strategy="bfd", padding_free=True`, fp32.

Real tokens: a forward pre-hook on the model's token embedding counts the input ids that are not
the pad token (the tokenizer has its own pad token, never in the data) in the forwards with
gradients during `Trainer.train`;
the clock runs from the forward of step `--warmup`+1 to the forward of the step after the last
timed one, so it holds `--steps` whole steps (forward, backward, optimizer, data loading) and
nothing else (no model loading, tokenization, packing, probes or saving).

Data: chat rows from the shared corpora (`../shared/data/corpora`: HH-RLHF harmless-base
transcripts, multi-turn and long, and Self-Instruct tasks, short), half each; without the shared
folder, generated rows (embedded tasks and stories). A byte-level BPE tokenizer is trained on them.

    .venv/bin/python benchmarks/sft_throughput.py --preset nano --rounds 2
    .venv/bin/python benchmarks/sft_throughput.py --tiny
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO.parent / "shared" / "data" / "corpora"
SIDES = ("tunesmith", "trl_fp32", "trl_shipped", "trl_packing")
TRL_SIDES = SIDES[1:]


def _hh_messages(text: str) -> list[dict]:
    turns = re.split(r"\n\n(Human|Assistant): ", "\n\n" + text.strip())
    msgs = [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(turns[1::2], turns[2::2])]
    while msgs and msgs[-1]["role"] != "assistant":
        msgs.pop()
    return msgs if msgs and msgs[0]["role"] == "user" else []


def chat_rows(count: int, seed: int = 0) -> list[dict]:
    """`count` chat rows: half HH-RLHF transcripts, half Self-Instruct tasks (or generated rows
    when the shared corpora are absent), shuffled."""
    rng = random.Random(seed)
    if (CORPORA / "hh_harmless_base_test.jsonl.gz").is_file():
        with gzip.open(CORPORA / "hh_harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as f:
            long = [m for line in f for m in [_hh_messages(json.loads(line)["chosen"])] if m]
        short = []
        for name in ("self_instruct_seed_tasks.jsonl", "self_instruct_user_oriented_instructions.jsonl"):
            for line in (CORPORA / name).read_text(encoding="utf-8").splitlines():
                task = json.loads(line)
                for inst in task["instances"]:
                    prompt = task["instruction"] + (f"\n\n{inst['input']}" if inst["input"] else "")
                    short.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": inst["output"]}])
        rows = rng.sample(long, count - count // 2) + rng.sample(short, min(count // 2, len(short)))
    else:
        from tunesmith.alignment.toy_tasks import instruction_rows
        from tunesmith.pretraining.corpus import __file__ as corpus_init

        stories = (Path(corpus_init).parent / "tinytales.txt").read_text(encoding="utf-8").split("\n\n")
        rows = [r["messages"] for r in instruction_rows(["add", "upper", "sort"], count // 2)]
        rows += [[{"role": "user", "content": "Tell me a story."},
                  {"role": "assistant", "content": " ".join(rng.sample(stories, rng.randint(1, 4)))}]
                 for _ in range(count - len(rows))]
    rng.shuffle(rows)
    return [{"messages": m} for m in rows]


def make_inputs(folder: Path, preset: str, rows: int, max_length: int) -> tuple[Path, Path]:
    """A freshly initialised llama of `preset` with a BPE tokenizer trained on the rows, and the rows."""
    data = chat_rows(rows)
    return save_inputs(folder, preset, max_length, [m["content"] for r in data for m in r["messages"]], data,
                       "train.jsonl")


def save_inputs(folder: Path, preset: str, max_length: int, texts: list[str], data: list[dict],
                name: str) -> tuple[Path, Path]:
    """A BPE tokenizer trained on `texts` (ChatML template) and a freshly initialised llama of
    `preset` saved to `folder/model`; `data` to `folder/name`."""
    import torch

    from tunesmith.data.chat import CHATML_TEMPLATE
    from tunesmith.pretraining.presets import build_model
    from tunesmith.pretraining.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, vocab_size=1024 if preset == "nano" else 4096)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    model = build_model("llama", preset, vocab=len(tok), context=max_length, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return folder / "model", path


class Meter:
    """Real tokens and time of the training steps, seen by the token embedding (see the docstring)."""

    def __init__(self, pad_id: int, vocab: int) -> None:
        import torch
        import transformers

        self.pad_id, self.calls, self.on = pad_id, [], False
        original = transformers.Trainer.train
        meter = self

        def train(trainer, *args, **kwargs):
            meter.on = True
            try:
                return original(trainer, *args, **kwargs)
            finally:
                meter.on = False

        transformers.Trainer.train = train

        def hook(module, args):  # training forwards only (grad on: not a reference model's no-grad forward)
            if self.on and torch.is_grad_enabled() and isinstance(module, torch.nn.Embedding) \
                    and module.num_embeddings == vocab and args:
                ids = args[0]
                self.calls.append((time.perf_counter(), int((ids != self.pad_id).sum()), ids.numel()))

        torch.nn.modules.module.register_module_forward_pre_hook(hook)

    def result(self, warmup: int, steps: int) -> dict:
        if len(self.calls) < warmup + steps + 1:
            raise RuntimeError(f"saw {len(self.calls)} training forwards, need {warmup + steps + 1}")
        timed = self.calls[warmup:warmup + steps]
        seconds = self.calls[warmup + steps][0] - timed[0][0]
        real, total = sum(c[1] for c in timed), sum(c[2] for c in timed)
        return {"tokens_per_s": real / seconds, "seconds": seconds, "real_tokens": real,
                "padding_fraction": 1 - real / total}


def run_side(side: str, model: str, data: str, a: argparse.Namespace, out: str) -> None:
    tok, meter, total_steps, work = start_side(side, model, a, out)
    if side == "tunesmith":
        from tunesmith.alignment.sft import sft

        extra, env = tunesmith_side(sft, {"sft": {"max_length": a.max_length}}, model, data, a, total_steps, work)
        extra["batching"] = env.get("batching", {}).get("choice")
    else:
        import trl

        options = {"trl_fp32": {"bf16": False}, "trl_shipped": {},
                   "trl_packing": {"bf16": False, "packing": True, "packing_strategy": "bfd", "padding_free": True}}
        extra = trl_side(trl.SFTConfig, trl.SFTTrainer, options[side], tok, model, data, a, total_steps, work)
    finish_side(meter, a, out, extra)


def trl_side(config_cls, trainer_cls, options: dict, tok, model: str, data: str, a: argparse.Namespace,
             steps: int, work: Path) -> dict:
    """One TRL side: the trainer with `options` over the JSONL rows; its dtype and TRL's own train time."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM

    ds = load_dataset("json", data_files=data, split="train")
    m = AutoModelForCausalLM.from_pretrained(model)
    args = config_cls(output_dir=str(work), max_steps=steps, per_device_train_batch_size=a.batch,
                      max_length=a.max_length, report_to=[], use_cpu=not torch.cuda.is_available(),
                      save_strategy="no", **options)
    trainer = trainer_cls(model=m, args=args, train_dataset=ds, processing_class=tok)
    return {"dtype": "bf16" if args.bf16 else "fp32", "train_seconds": trainer.train().metrics["train_runtime"]}


def tunesmith_side(stage, block: dict, model: str, data: str, a: argparse.Namespace, steps: int,
                   work: Path) -> tuple[dict, dict]:
    """Run a tunesmith stage at its defaults (full fine-tuning): (figures, environment.json)."""
    r = stage(model={"path": model}, adapter={"method": "full"}, data={"inputs": [{"path": data}]}, **block,
              train={"max_steps": steps, "batch_size": a.batch, "warmup_steps": 0, "save_steps": 10_000,
                     "eval_steps": 10_000},
              run={"dir": str(work), "overwrite": True, "sample_tokens": 0})
    env = json.loads((r.run_dir / "environment.json").read_text())
    return {"dtype": env.get("dtype"), "train_seconds": r.metrics["train_seconds"]}, env


def start_side(side: str, model: str, a: argparse.Namespace, out: str) -> tuple:
    """(tokenizer, a `Meter` on it, steps to train, the side's work folder)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return tok, Meter(tok.pad_token_id, len(tok)), a.warmup + a.steps + 1, Path(out).parent / f"{side}-run"


def finish_side(meter: Meter, a: argparse.Namespace, out: str, extra: dict) -> None:
    """The side's figures (and its peak RSS) to `out` for the parent process."""
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({**meter.result(a.warmup, a.steps), "peak_rss_mb": rss, **extra,
                                     "torch_threads": torch.get_num_threads()}))


def cli(doc: str, script: str, sides: tuple[str, ...], tiny_sides: str, unit: str, run_side, make_inputs,
        title: str) -> None:
    """The command line of a throughput comparison: one side (`--side`, in a subprocess) or all."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_arguments(p, sides, tiny_sides, unit)
    a = p.parse_args()
    if a.tiny:
        a.rows, a.max_length, a.steps, a.warmup, a.preset, a.sides = 48, 128, 2, 1, "nano", tiny_sides
    if a.side:
        return run_side(a.side, a.model, a.data, a, a.out)
    folder = Path(tempfile.mkdtemp(prefix=f"{title.split()[0].lower()}-bench-"))
    trl_sides = tuple(s for s in sides if s.startswith("trl"))
    try:
        compare(script, a, (folder, *make_inputs(folder, a.preset, a.rows, a.max_length)), trl_sides, title)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the model, data and every side's run folder


def add_arguments(p: argparse.ArgumentParser, sides: tuple[str, ...], tiny_sides: str, unit: str) -> None:
    """The options every throughput comparison takes (this script's and dpo_throughput's)."""
    p.add_argument("--preset", choices=["nano", "small"], default="nano")
    p.add_argument("--steps", type=int, default=20, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--batch", type=int, default=8, help=f"{unit} per step")
    p.add_argument("--rows", type=int, default=600)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--rounds", type=int, default=1, help="rounds of all sides, order reversed every other round")
    p.add_argument("--sides", default=",".join(sides))
    p.add_argument("--threads", type=int, default=1, help=(
        "OMP_NUM_THREADS of every side (1: on a machine shared with other work, more threads than free "
        "cores make OpenMP wait on descheduled threads and times swing by 10x)"))
    p.add_argument("--tiny", action="store_true",
                   help=f"a quick check: 48 {unit}, max length 128, 2 timed steps, {tiny_sides.replace(',', ' and ')} only")
    p.add_argument("--side", choices=sides)
    p.add_argument("--model"), p.add_argument("--data"), p.add_argument("--out")


def compare(script: str, a: argparse.Namespace, inputs: tuple[Path, Path, Path], trl_sides: tuple[str, ...],
            title: str) -> None:
    """Run every side of `script` in its own subprocess, rounds alternating, and print the table
    (medians; ratios against the fastest TRL side)."""
    folder, model, data = inputs
    sides = [s for s in a.sides.split(",") if s]
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    for rnd in range(a.rounds):
        for side in (sides if rnd % 2 == 0 else sides[::-1]):
            out = folder / f"{side}-{rnd}.json"
            cmd = [sys.executable, script, "--side", side, "--model", str(model), "--data", str(data),
                   "--out", str(out), "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.batch),
                   "--max-length", str(a.max_length), "--preset", a.preset]
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=env,
                           stderr=None if a.tiny else subprocess.DEVNULL)
            runs[side].append(json.loads(out.read_text()))
    table = {s: {k: statistics.median(x[k] for x in r) for k in ("tokens_per_s", "peak_rss_mb", "padding_fraction")}
             | {"dtype": r[0]["dtype"], "batching": r[0].get("batching", "")} for s, r in runs.items()}
    present = [s for s in sides if s in trl_sides]
    best = max(present, key=lambda s: table[s]["tokens_per_s"]) if present else None
    print(f"{title}: preset {a.preset}, {a.rows} rows, batch {a.batch}, max length {a.max_length}, {a.steps} timed "
          f"steps after {a.warmup}, {a.rounds} round(s), torch threads {runs[sides[0]][0]['torch_threads']}")
    print(f"| side | dtype | real tokens/s | padding | peak RSS MB | tokens/s vs {best} | RSS vs {best} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for s, row in table.items():
        ratio = row["tokens_per_s"] / table[best]["tokens_per_s"] if best else float("nan")
        rss = row["peak_rss_mb"] / table[best]["peak_rss_mb"] if best else float("nan")
        label = f"{s} ({row['batching']})" if row["batching"] else s
        print(f"| {label} | {row['dtype']} | {row['tokens_per_s']:,.0f} | {row['padding_fraction']:.1%} | "
              f"{row['peak_rss_mb']:,.0f} | {ratio:.2f}x | {rss:.2f}x |")
    print(json.dumps({"table": table, "fastest_trl": best}))


def main() -> None:
    cli(__doc__, __file__, SIDES, "tunesmith,trl_packing", "rows", run_side, make_inputs, "SFT throughput")


if __name__ == "__main__":
    main()
