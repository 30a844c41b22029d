"""Per-process memory of FSDP2 vs DDP at 2 CPU processes (gloo), on the pretraining presets.

On a 2-core machine scaling efficiency means little; what transfers to GPUs is how much each
process holds. Each (mode, preset) runs in a fresh `torchrun --standalone --nproc_per_node 2`
of this file: every process builds the preset's Llama (fp32), wraps it the way tunesmith's
accelerate path does (DDP; or FSDP2 `fully_shard` per decoder layer, then the root, FULL_SHARD),
builds AdamW and trains 2 steps of batch 2 x 128 tokens (the second with the optimizer state
allocated). Read from /proc per process:
- base: RSS before the model is built (interpreter, torch, the process group);
- held: RSS after the 2 steps minus base (parameters + gradients + AdamW state + buffers kept);
- peak: the high-water mark during training (VmHWM, reset through /proc/self/clear_refs once
  the model is wrapped) minus base: held + activations + FSDP's transient all-gathered layers.
Sharding should cut `held` roughly in half: each process keeps 1/2 of the parameters, gradients
and optimizer state (DDP keeps all of them, plus its gradient buckets).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/distributed_memory.py            # small and base
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/distributed_memory.py --tiny     # nano, both modes
                                                                                  # in one torchrun
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MARK = "MEMORY "
BATCH, SEQ, STEPS = 2, 128, 2


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def worker(modes: list[str], size: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    for mode in modes:
        _one(mode, size, dist.get_rank())
    dist.destroy_process_group()


def _one(mode: str, size: str, rank: int) -> None:
    import gc

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tunesmith.pretraining.presets import build_model, count_parameters

    torch.manual_seed(0)
    gc.collect()
    base = _status("VmRSS")
    model = build_model("llama", size)
    params = count_parameters(model)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    else:
        model = torch.nn.parallel.DistributedDataParallel(model)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    vocab = (model.module if mode == "ddp" else model).config.vocab_size
    for step in range(STEPS):
        x = torch.randint(0, vocab, (BATCH, SEQ), generator=torch.Generator().manual_seed(rank * 100 + step))
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    gc.collect()
    held, peak = _status("VmRSS") - base, _status("VmHWM") - base
    print(MARK + json.dumps({"rank": rank, "mode": mode, "size": size, "parameters": params,
                             "base": base, "held": held, "peak": peak}), flush=True)
    del model, opt
    gc.collect()


def measure(modes: str, size: str) -> list[dict]:
    """Rows of `modes` ("ddp", "fsdp", or "ddp,fsdp": one after the other in the same processes,
    used by --tiny to start the interpreters once) on `size`, sorted by rank."""
    # glibc returns freed large blocks to the system only below its mmap threshold, which it raises
    # after the first such free: a fixed threshold keeps RSS = what is held, not what was once used
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), "--worker", modes, "--size", size]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    rows = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    return sorted(rows, key=lambda r: (r["mode"], r["rank"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the nano preset only (seconds)")
    ap.add_argument("--size", action="append", help="preset(s) to measure (default: small and base)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker.split(","), args.size[0])
        return 0
    sizes = ["nano"] if args.tiny else (args.size or ["small", "base"])
    mib = 1 / 2**20
    print("| preset | parameters | mode | process | held MiB | peak MiB | held FSDP/DDP |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        if args.tiny:
            rows = measure("ddp,fsdp", size)
            ddp, fsdp = [r for r in rows if r["mode"] == "ddp"], [r for r in rows if r["mode"] == "fsdp"]
        else:
            ddp, fsdp = measure("ddp", size), measure("fsdp", size)
        for rows in (ddp, fsdp):
            for r in rows:
                ratio = r["held"] / ddp[r["rank"]]["held"] if r["mode"] == "fsdp" and ddp[r["rank"]]["held"] else None
                print(f"| {size} | {r['parameters'] / 1e6:.1f}M | {r['mode'].upper()} | {r['rank']} | "
                      f"{r['held'] * mib:.0f} | {r['peak'] * mib:.0f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
