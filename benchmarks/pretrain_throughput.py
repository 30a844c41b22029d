"""Pretraining throughput and model FLOPs utilization (MFU) on this machine.

For each preset (small, base) x objective (next-token, multi-token) x dtype (fp32, bf16):
tokens/s of full training steps (forward, backward, AdamW) through tunesmith's loss code,
and MFU = 6 * params * tokens/s / dense matmul FLOP/s, with the fp32 and bf16 matmul rates
measured in the same run. A dtype whose matmul is > 5x slower than the other is skipped
(on AVX2-only CPUs bf16 is ~100x slower than fp32; a base step would take many minutes).

    python benchmarks/pretrain_throughput.py [--sizes small,base] [--steps 4]
    python benchmarks/pretrain_throughput.py --tiny     # the nano preset, 2 timed steps, a small matmul

For tunesmith's whole stage against a plain PyTorch loop, see benchmarks/pretrain_vs_plain.py.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from tunesmith.core.device import cpu_matmul_rates
from tunesmith.pretraining.mtp import attach_heads, causal_lm_losses
from tunesmith.pretraining.presets import build_model, count_parameters

SHAPES = {"nano": (4, 64), "small": (8, 256), "base": (4, 256)}  # micro-batch, block size


def measure(size: str, objective: str, dtype: str, steps: int) -> dict:
    torch.manual_seed(0)
    model = build_model("llama", size)
    if objective == "multi_token":
        attach_heads(model, 4)
    params = count_parameters(model)
    batch, block = SHAPES[size]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=False)
    ids = torch.randint(0, model.config.vocab_size, (batch, block))
    heads = getattr(model, "mtp_heads", None)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    times = []
    for step in range(steps + 1):  # the first step is warm-up
        t = time.perf_counter()
        with autocast:
            loss = torch.stack(causal_lm_losses(model, ids, ids, heads=heads)).sum()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            times.append(time.perf_counter() - t)
    sec = sorted(times)[len(times) // 2]
    return {"size": size, "objective": objective, "dtype": dtype, "params": params,
            "tokens_per_s": batch * block / sec, "step_s": sec}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="small,base")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tiny", action="store_true", help="seconds: --sizes nano --steps 2, a 256^3 matmul, one thread")
    args = ap.parse_args()
    if args.tiny:
        args.sizes, args.steps = "nano", 2
        torch.set_num_threads(1)
    n = 256 if args.tiny else 1024
    rates = cpu_matmul_rates(n=n)
    best = max(rates.values())
    print(f"torch threads: {torch.get_num_threads()}; dense matmul {n}^3: "
          f"fp32 {rates['fp32'] / 1e9:.1f} GFLOP/s, bf16 {rates['bf16'] / 1e9:.1f} GFLOP/s")
    header = f"{'preset':6} {'objective':11} {'dtype':5} {'params':>11} {'tokens/s':>9} {'step s':>7} " \
             f"{'MFU/fp32':>8} {'MFU/bf16':>8} {'MFU/best':>8}"
    print(header)
    for size in args.sizes.split(","):
        for objective in ("next_token", "multi_token"):
            for dtype in ("fp32", "bf16"):
                if rates[dtype] * 5 < best:
                    print(f"{size:6} {objective:11} {dtype:5}  skipped: {dtype} matmul is "
                          f"{best / rates[dtype]:.0f}x slower than the faster dtype here")
                    continue
                r = measure(size, objective, dtype, args.steps)
                flops = 6 * r["params"] * r["tokens_per_s"]
                print(f"{size:6} {objective:11} {dtype:5} {r['params']:>11,} {r['tokens_per_s']:>9.0f} "
                      f"{r['step_s']:>7.2f} {flops / rates['fp32']:>8.2f} {flops / rates['bf16']:>8.2f} "
                      f"{flops / best:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
