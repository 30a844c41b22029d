"""Pretraining tokens/s: tunesmith's `pretrain` stage against a plain PyTorch loop of the same
model, and against a nanoGPT-style minimal GPT at (nearly) equal parameter count.

Three sides, each in a fresh subprocess with `torch.set_num_threads(1)`, alternated and repeated:

- `tunesmith`: `tunesmith.pretrain(...)` as a user runs it (HF Trainer, its callbacks, metrics.jsonl,
  checkpoints off the timed window), fp32 (`train.dtype: fp32`).
- `plain`: the same Llama-family model (same shape, init, tokenizer and packed blocks), trained by
  a hand-written loop: AdamW (torch's default implementation, or with `--fused-adamw` the fused one
  the Trainer uses; no-decay groups for biases and norms as the Trainer does), the same warm-up +
  cosine schedule, gradient clipping at the same norm, the same batch of blocks, `model(input_ids, labels=...).loss`. No Trainer, no callbacks, no logging. fp32.
- `nanogpt`: nanoGPT's model (learned positions, LayerNorm, GELU MLP, tied embeddings, causal
  `scaled_dot_product_attention`) with the same layers, width and vocabulary, trained by the same
  plain loop on the same blocks. fp32. It separates the cost of the model code from the loop's.

Every side counts real (non-padding) tokens the same way, the sum of each batch's attention mask,
and is timed the same way, from the end of warm-up step W to the end of step N (the Trainer's
`on_step_end`; the plain loops' own step end), logging and every other periodic cost included:
tokens/s is per second of the side's own CPU time (`time.process_time`, one thread: robust when
other jobs share the CPU), and per second of wall time beside it. Ratios are taken within each
round, and the median over rounds is printed.

    python benchmarks/pretrain_vs_plain.py [--rounds 3] [--steps 40] [--warmup 5]
    python benchmarks/pretrain_vs_plain.py --small-steps   # 0.2M parameters, 512 tokens a step
    python benchmarks/pretrain_vs_plain.py --same-process  # every side in this process, alternating
    python benchmarks/pretrain_vs_plain.py --plain-heap    # the plain loops get tunesmith's malloc settings too

tunesmith's stages keep freed memory in glibc's heap for the next step (`compat.keep_freed_heap`);
the plain loops run with glibc's defaults unless `--plain-heap` (in `--same-process` every side
shares the process, so the setting, once made, holds for all).
    python benchmarks/pretrain_vs_plain.py --tiny          # seconds: tiny model and data
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("tunesmith", "plain", "nanogpt")
RESULT = "RESULT "

FULL = dict(layers=3, hidden=128, heads=4, intermediate=344, vocab=2048, block=128, batch=16, steps=40,
            warmup=5, documents=4000, rounds=3)
# small steps (~10 ms): where the loop's own per-step cost shows
SMALL_STEPS = dict(layers=2, hidden=64, heads=4, intermediate=172, vocab=2048, block=64, batch=8, steps=150,
                   warmup=10, documents=4000, rounds=3)
TINY = dict(layers=1, hidden=32, heads=2, intermediate=88, vocab=300, block=32, batch=4, steps=6, warmup=2,
            documents=120, rounds=1)
LR, LR_WARMUP, WEIGHT_DECAY, CLIP, SEED = 3e-3, 10, 0.1, 1.0, 42


def corpus_documents(n: int) -> list[str]:
    from tunesmith.pretraining.corpus import __file__ as corpus_init

    text = (Path(corpus_init).parent / "tinytales.txt").read_text(encoding="utf-8")
    return [d for d in text.split("\n\n") if d.strip()][:n]


def prepare(work: Path, s: dict) -> None:
    """The shared inputs: the corpus (first `documents` stories), a BPE tokenizer trained on it, and
    the packed blocks tunesmith's data pipeline makes of them (`blocks.safetensors`: every block, in
    the stage's order before shuffling, with its attention mask and labels) for the plain loops."""
    import torch
    from safetensors.torch import save_file

    from tunesmith.pretraining.config import PretrainConfig
    from tunesmith.pretraining.data import build_data
    from tunesmith.pretraining.tokenizer import train_tokenizer

    docs = corpus_documents(s["documents"])
    (work / "corpus.txt").write_text("\n\n".join(docs), encoding="utf-8")
    tok = train_tokenizer(docs, vocab_size=s["vocab"])
    tok.save_pretrained(work / "tokenizer")
    data = build_data(PretrainConfig(**pretrain_config(work, s, "unused")), tok)
    examples = [data.train[i] for i in range(len(data.train))]
    tensors = {k: torch.stack([e[k] for e in examples]).contiguous() for k in examples[0]}
    tensors["special_ids"] = torch.tensor([len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id])
    save_file(tensors, str(work / "blocks.safetensors"))


def pretrain_config(work: Path, s: dict, run: str) -> dict:
    return {"model": {"family": "llama", "layers": s["layers"], "hidden": s["hidden"], "heads": s["heads"],
                      "kv_heads": s["heads"], "intermediate": s["intermediate"], "context": s["block"]},
            "tokenizer": {"path": str(work / "tokenizer")},
            "data": {"train": str(work / "corpus.txt"), "block_size": s["block"], "validation_fraction": 0.0},
            "train": {"max_steps": s["steps"], "batch_size": s["batch"], "lr": LR, "warmup_steps": LR_WARMUP,
                      "weight_decay": WEIGHT_DECAY, "max_grad_norm": CLIP, "dtype": "fp32", "seed": SEED,
                      "save_steps": 10 ** 6, "eval_steps": 10 ** 6},
            "run": {"dir": str(work / run), "overwrite": True, "sample_tokens": 0}}


# --- the sides (each runs in its own subprocess) ---------------------------------------------

def side_tunesmith(work: Path, s: dict) -> dict:
    from transformers.trainer_callback import CallbackHandler

    import tunesmith as ts

    marks: list[tuple[float, float, int, int]] = []
    original = CallbackHandler.on_step_end

    def on_step_end(self, args, state, control):  # timestamps only: the measurement, not the code measured
        marks.append(mark(state.num_input_tokens_seen))
        return original(self, args, state, control)

    CallbackHandler.on_step_end = on_step_end
    start = time.perf_counter()
    try:
        result = ts.pretrain(pretrain_config(work, s, "run-tunesmith"))
    finally:
        CallbackHandler.on_step_end = original  # (--same-process runs this side again in this process)
    total = time.perf_counter() - start
    out = window(marks, s["warmup"])
    params = result.metrics["parameters"]
    return {**out, "params": params, "train_loss": result.metrics["train_loss"], "stage_seconds": round(total, 2)}


def plain_batches(work: Path, s: dict):
    """The stage's packed blocks (from `prepare`), shuffled, as batches of stacked tensors; and
    (vocabulary, bos, eos, pad) of the tokenizer."""
    import torch
    from safetensors.torch import load_file

    blocks = load_file(str(work / "blocks.safetensors"))
    special = blocks.pop("special_ids").tolist()
    n = len(blocks["input_ids"])
    gen = torch.Generator().manual_seed(SEED)
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(-(-s["steps"] * s["batch"] // n))])
    batches = [{k: v[order[i * s["batch"]:(i + 1) * s["batch"]]] for k, v in blocks.items()} for i in range(s["steps"])]
    return special, batches


def lr_lambda(steps: int):
    """The Trainer's `cosine_with_min_lr` (min_lr_rate 0.1) after a linear warm-up."""
    def f(step: int) -> float:
        if step < LR_WARMUP:
            return step / max(1, LR_WARMUP)
        progress = (step - LR_WARMUP) / max(1, steps - LR_WARMUP)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def plain_loop(model, batches, s: dict, loss_of) -> dict:
    import torch

    if s.get("plain_heap"):  # the same malloc settings tunesmith's stages make (compat.keep_freed_heap)
        from tunesmith.compat import keep_freed_heap

        keep_freed_heap()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR,
                            **({"fused": True} if s.get("fused_adamw") else {}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(s["steps"]))
    model.train()
    marks, tokens, losses = [], 0, []
    for batch in batches:
        loss = loss_of(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
        losses.append(loss.item())
        marks.append(mark(tokens))
    return {**window(marks, s["warmup"]), "train_loss": sum(losses) / len(losses)}


def side_plain(work: Path, s: dict) -> dict:
    from tunesmith.pretraining.init import initialize
    from tunesmith.pretraining.presets import build_model, count_parameters

    (vocab, bos, eos, pad), batches = plain_batches(work, s)
    model = build_model("llama", "nano", layers=s["layers"], hidden=s["hidden"], heads=s["heads"],
                        kv_heads=s["heads"], intermediate=s["intermediate"], context=s["block"], vocab=vocab,
                        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    initialize(model, "llama", "gpt2_scaled", 0.02, seed=SEED)
    out = plain_loop(model, batches, s, lambda m, b: m(input_ids=b["input_ids"], labels=b["labels"]).loss)
    return {**out, "params": count_parameters(model)}


def nanogpt_model(vocab: int, block: int, layers: int, hidden: int, heads: int):
    """nanoGPT's GPT (model.py, bias=False, dropout 0), condensed."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(hidden, bias=False), nn.LayerNorm(hidden, bias=False)
            self.c_attn, self.c_proj = nn.Linear(hidden, 3 * hidden, bias=False), nn.Linear(hidden, hidden, bias=False)
            self.c_fc, self.mlp_proj = nn.Linear(hidden, 4 * hidden, bias=False), nn.Linear(4 * hidden, hidden, bias=False)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(hidden, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(b, t, c)
            x = x + self.c_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, hidden), nn.Embedding(block, hidden)
            self.h = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(hidden, bias=False)
            self.lm_head = nn.Linear(hidden, vocab, bias=False)
            self.lm_head.weight = self.wte.weight
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = 0.02 / math.sqrt(2 * layers) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for blk in self.h:
                x = blk(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets[:, 1:].reshape(-1),
                                   ignore_index=-100)

    return GPT()


def side_nanogpt(work: Path, s: dict) -> dict:
    import torch

    (vocab, *_), batches = plain_batches(work, s)
    torch.manual_seed(SEED)
    model = nanogpt_model(vocab, s["block"], s["layers"], s["hidden"], s["heads"])
    out = plain_loop(model, batches, s, lambda m, b: m(b["input_ids"], b["labels"]))
    return {**out, "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())}


def mark(tokens: int) -> tuple[float, float, int, int]:
    return time.perf_counter(), time.process_time(), tokens, page_faults()


def page_faults() -> int:
    """Minor page faults of this process so far (each a new page the kernel zeroes): 0 off Unix."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def window(marks: list[tuple[float, float, int, int]], warmup: int) -> dict:
    """tokens/s from the end of step `warmup` to the end of the last step (logging and every other
    periodic cost included), per second of this process's CPU time (one thread: what the side
    itself spent, robust to other jobs taking the CPU) and per second of wall time; and the page
    faults a step took."""
    (w0, c0, n0, f0), (w1, c1, n1, f1) = marks[warmup - 1], marks[-1]
    steps = len(marks) - warmup
    return {"tokens_per_s": (n1 - n0) / (c1 - c0), "wall_tokens_per_s": (n1 - n0) / (w1 - w0),
            "timed_steps": steps, "timed_tokens": n1 - n0, "step_cpu_s": (c1 - c0) / steps,
            "faults_per_step": (f1 - f0) / steps}


def run_side(side: str, work: Path, s: dict) -> dict:
    if s.get("same_process"):  # every side in this process: no process-level difference between them
        import torch

        torch.set_num_threads(1)
        return globals()[f"side_{side}"](work, s)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, __file__, "--side", side, "--work", str(work), "--settings", json.dumps(s)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        raise SystemExit(f"side {side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT):])


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    kind = ("AMX" if " amx_bf16" in info else "AVX512-BF16" if " avx512_bf16" in info
            else "AVX-512" if " avx512f" in info else "AVX2")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{name} ({kind}), {os.cpu_count()} CPUs, load average {load:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="seconds: a tiny model, corpus and step count")
    ap.add_argument("--small-steps", action="store_true",
                    help="2 layers x 64, batch 8 x 64 tokens, 150 steps: a step of ~10 ms, where loop overhead shows")
    ap.add_argument("--rounds", type=int, help="rounds of all sides (alternating order)")
    ap.add_argument("--steps", type=int, help="optimizer steps per side")
    ap.add_argument("--warmup", type=int, help="untimed first steps")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--block", type=int)
    ap.add_argument("--fused-adamw", action="store_true",
                    help="the plain loops use torch's fused AdamW (the Trainer's default) instead of torch's default")
    ap.add_argument("--plain-heap", action="store_true",
                    help="the plain loops keep freed memory in the heap as tunesmith's stages do (glibc mallopt: "
                         "compat.keep_freed_heap) instead of glibc's defaults")
    ap.add_argument("--same-process", action="store_true",
                    help="run every side in this one process (alternating) instead of a fresh process each: "
                         "the heap, imports and threads are the same for all, only the training loop differs")
    ap.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--settings", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:  # one side, in this fresh process
        import torch

        torch.set_num_threads(1)
        result = globals()[f"side_{args.side}"](Path(args.work), json.loads(args.settings))
        print(RESULT + json.dumps(result), flush=True)
        return
    s = dict(TINY if args.tiny else SMALL_STEPS if args.small_steps else FULL)
    s.update({k: v for k, v in vars(args).items() if k in s and v is not None})
    s["fused_adamw"], s["same_process"], s["plain_heap"] = args.fused_adamw, args.same_process, args.plain_heap
    print(f"machine: {machine()}; torch threads 1 per side; fp32 on every side; "
          f"{'all sides in one process' if s['same_process'] else 'each side a fresh process'}")
    print(f"shape: {s['layers']} layers x {s['hidden']} hidden, {s['heads']} heads, vocab {s['vocab']}; "
          f"batch {s['batch']} x block {s['block']}; {s['steps']} steps, the first {s['warmup']} untimed; "
          f"{s['rounds']} round(s); plain loops' AdamW: {'fused' if s['fused_adamw'] else 'torch default (foreach)'}; "
          f"plain loops' malloc: {'freed memory kept, as tunesmith' if s['plain_heap'] else 'glibc defaults'}",
          flush=True)
    every: list[dict[str, dict]] = []  # each round's result per side
    with tempfile.TemporaryDirectory(prefix="pretrain-vs-plain-") as tmp:
        work = Path(tmp)
        prepare(work, s)
        for r in range(s["rounds"]):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            got = {side: run_side(side, work, s) for side in order}
            print(f"round {r + 1}: " + ", ".join(f"{side} {got[side]['tokens_per_s']:,.0f}" for side in SIDES)
                  + " tokens/s", flush=True)
            every.append(got)

    def per_round(side: str, key: str = "tokens_per_s") -> list[float]:
        return [r[side][key] for r in every]

    def ratio_per_round(other: str, key: str = "tokens_per_s") -> list[float]:  # tunesmith / other, each round
        return [r["tunesmith"][key] / r[other][key] for r in every]

    ratios = {other: ratio_per_round(other) for other in ("plain", "nanogpt")}
    window_ratios = {other: ratio_per_round(other, "wall_tokens_per_s") for other in ("plain", "nanogpt")}
    last = every[-1]
    print()
    print("| side | params | tokens/CPU-s | CPU ms a step | page faults a step | tokens/wall-s | tunesmith / side | "
          "same, wall time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for side in SIDES:
        rate, whole = statistics.median(per_round(side)), statistics.median(per_round(side, "wall_tokens_per_s"))
        ratio = "1.00x" if side == "tunesmith" else f"{statistics.median(ratios[side]):.2f}x"
        ratio_w = "1.00x" if side == "tunesmith" else f"{statistics.median(window_ratios[side]):.2f}x"
        faults = statistics.median(per_round(side, "faults_per_step"))
        print(f"| {side} | {last[side]['params']:,} | {rate:,.0f} | {1000 * last[side]['step_cpu_s']:.1f} | {faults:,.0f} | "
              f"{whole:,.0f} | {ratio} | {ratio_w} |")
    print()
    print(f"tunesmith vs plain loop: {statistics.median(ratios['plain']):.2f}x; "
          f"vs nanoGPT-style GPT: {statistics.median(ratios['nanogpt']):.2f}x "
          f"(per round: {', '.join(f'{x:.2f}' for x in ratios['plain'])} / "
          f"{', '.join(f'{x:.2f}' for x in ratios['nanogpt'])})")


if __name__ == "__main__":
    main()
