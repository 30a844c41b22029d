"""tunesmith SFT (packing) vs a plain TRL SFTTrainer with TRL defaults (padded batches): same nano
model, same mixed-length chat data, same steps and batch size, each side in its own subprocess
(clean peak RSS). Prints real (non-pad) tokens/s, padding fraction and peak memory, and the ratio.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/sft_throughput.py --steps 30
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    """A nano llama + tokenizer, and chat rows mixing 1-digit sums with story answers of 20-400 tokens."""
    import torch

    from tunesmith.alignment.toy_tasks import instruction_rows
    from tunesmith.pretraining.corpus import __file__ as corpus_init
    from tunesmith.pretraining.presets import build_model
    from tunesmith.pretraining.tokenizer import train_tokenizer

    stories = (Path(corpus_init).parent / "tinytales.txt").read_text(encoding="utf-8").split("\n\n")
    tok = train_tokenizer(stories[:2000], vocab_size=1024)
    torch.manual_seed(0)
    model = build_model("llama", "nano", vocab=len(tok), context=512, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    rng = random.Random(0)
    data = [{"messages": r["messages"]} for r in instruction_rows(["add", "upper", "sort"], rows // 2)]
    for _ in range(rows - len(data)):
        story = " ".join(rng.sample(stories[2000:], rng.randint(1, 4)))
        data.append({"messages": [{"role": "user", "content": "Tell me a story."},
                                  {"role": "assistant", "content": story}]})
    rng.shuffle(data)
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    return folder / "model", path


def run_side(side: str, model: str, data: str, steps: int, batch: int, out: str) -> None:
    import torch
    from datasets import load_dataset

    train = {"max_steps": steps, "batch_size": batch, "dtype": "fp32", "warmup_steps": 0, "logging_steps": steps,
             "save_steps": 10_000, "eval_steps": 10_000}
    if side == "tunesmith":
        from tunesmith.alignment.sft import sft

        t = time.perf_counter()
        r = sft(model={"path": model}, adapter={"method": "full"}, data={"inputs": [{"path": data}]},
                sft={"max_length": 512, "batching": "packing"}, train=train,
                run={"dir": str(Path(out).parent / "ts-run"), "overwrite": True})
        seconds = r.metrics["train_seconds"]
        tokens = r.metrics["train_tokens"]  # real tokens, counted per batch
        padded = tokens  # packs carry no padding (padding-free collation)
    else:
        import trl
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tunesmith.data.chat import CHATML_TEMPLATE

        tok = AutoTokenizer.from_pretrained(model)
        tok.chat_template = tok.chat_template or CHATML_TEMPLATE
        ds = load_dataset("json", data_files=data, split="train")
        m = AutoModelForCausalLM.from_pretrained(model)
        args = trl.SFTConfig(output_dir=str(Path(out).parent / "trl-run"), max_steps=steps,
                             per_device_train_batch_size=batch, report_to=[], use_cpu=True, save_strategy="no",
                             logging_steps=steps)
        trainer = trl.SFTTrainer(model=m, args=args, train_dataset=ds, processing_class=tok)
        real = padded = 0
        for i, b in enumerate(trainer.get_train_dataloader()):
            if i == steps:
                break
            real += int(b["attention_mask"].sum())
            padded += b["attention_mask"].numel()
        seconds = trainer.train().metrics["train_runtime"]
        tokens = real
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({"tokens_per_s": tokens / seconds, "padding_fraction": 1 - tokens / padded,
                                     "peak_rss_mb": rss, "seconds": seconds, "torch_threads": torch.get_num_threads()}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rows", type=int, default=800)
    p.add_argument("--side", choices=["tunesmith", "trl"])
    p.add_argument("--model"), p.add_argument("--data"), p.add_argument("--out")
    a = p.parse_args()
    if a.side:
        return run_side(a.side, a.model, a.data, a.steps, a.batch, a.out)
    folder = Path(tempfile.mkdtemp(prefix="sft-bench-"))
    model, data = make_inputs(folder, a.rows)
    res = {}
    for side in ("trl", "tunesmith"):
        out = folder / f"{side}.json"
        subprocess.run([sys.executable, __file__, "--side", side, "--model", str(model), "--data", str(data),
                        "--out", str(out), "--steps", str(a.steps), "--batch", str(a.batch)], check=True)
        res[side] = json.loads(out.read_text())
        print(side, {k: round(v, 3) for k, v in res[side].items()})
    print(f"tokens/s ratio tunesmith/trl: {res['tunesmith']['tokens_per_s'] / res['trl']['tokens_per_s']:.2f}x "
          f"(padding {res['trl']['padding_fraction']:.1%} -> {res['tunesmith']['padding_fraction']:.1%}; peak RSS "
          f"{res['trl']['peak_rss_mb']:.0f} -> {res['tunesmith']['peak_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
