"""Peak memory and step time of full / LoRA / QLoRA-4bit / 8-bit training, against the planner.

Each configuration runs in its own subprocess so its peak RSS is clean. Two peaks are read
from /proc: the whole process (VmHWM at exit, loading included) and the training phase
(VmHWM reset through /proc/self/clear_refs after loading; this is what `plan` predicts).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/adapters_memory.py --size base --steps 3
    .venv/bin/python benchmarks/adapters_memory.py --size small --out /tmp/small.md  # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [  # (label, adapter block, batch, seq)
    ("full", {"method": "full"}, 2, 128),
    ("full + checkpointing", {"method": "full", "gradient_checkpointing": True}, 2, 128),
    ("full + adamw_8bit", {"method": "full", "optimizer": "adamw_8bit"}, 2, 128),
    ("lora r16", {"method": "lora"}, 2, 128),
    ("lora r16 seq 512", {"method": "lora"}, 1, 512),
    ("lora r16 seq 512 + checkpointing", {"method": "lora", "gradient_checkpointing": True}, 1, 512),
    ("qlora nf4 r16", {"method": "qlora"}, 2, 128),
    ("qlora nf4 r16 seq 512", {"method": "qlora"}, 1, 512),
    ("lora on int8 base", {"method": "lora", "quantize": "int8"}, 2, 128),
]


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def run_one(folder: str, adapter: dict, batch: int, seq: int, steps: int) -> dict:
    """Load, apply, train `steps` steps; report peaks (bytes) and the mean step time."""
    import torch
    from tunesmith.adapters import AdapterConfig, apply, load_base
    from tunesmith.adapters.optim import build_optimizer
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = AdapterConfig(**adapter)
    model = apply(load_base(folder, cfg, dtype="float32"), cfg)
    model.train()
    opt = build_optimizer(model, cfg, lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (batch, seq))
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: measure training only
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"train_peak": _kib("VmHWM") * 1024, "step_s": sum(times[1:]) / max(1, len(times) - 1),
            "loss": float(loss)}


def measure(folder: str, adapter: dict, batch: int, seq: int, steps: int) -> dict:
    code = ("import json,sys,resource; sys.path.insert(0, %r); from adapters_memory import run_one; "
            "r = run_one(%r, %r, %d, %d, %d); "
            "r['process_peak'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024; "
            "print('RESULT', json.dumps(r))") % (str(Path(__file__).parent), folder, adapter,
                                                batch, seq, steps)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", help="llama preset size (base is ~100M)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "adapters.md"))
    parser.add_argument("--only", nargs="*", help="labels of the configurations to run")
    args = parser.parse_args()

    from tunesmith.adapters import AdapterConfig
    from tunesmith.adapters.planner import plan
    from tunesmith.pretraining.presets import build_model, count_parameters

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model("llama", args.size)
        n_params = count_parameters(model)
        model.save_pretrained(tmp)
        del model
        for label, adapter, batch, seq in CONFIGS:
            if args.only and label not in args.only:
                continue
            got = measure(tmp, adapter, batch, seq, args.steps)
            predicted = plan(tmp, AdapterConfig(**adapter), batch_size=batch, seq_len=seq)
            error = (predicted.total - got["train_peak"]) / got["train_peak"]
            rows.append((label, batch, seq, got, predicted.total, error))
            print(f"{label:36s} train peak {got['train_peak'] / 2**30:6.2f} GiB  process peak "
                  f"{got['process_peak'] / 2**30:6.2f} GiB  planned {predicted.total / 2**30:6.2f} GiB "
                  f"({error:+.1%})  step {got['step_s']:.2f}s", flush=True)
    write_report(Path(args.out), args.size, n_params, rows)


def write_report(out: Path, size: str, n_params: int, rows: list) -> None:
    by_label = {r[0]: r for r in rows}
    lines = [f"# Adapters: memory and step time (llama `{size}`, {n_params / 1e6:.1f}M parameters, "
             "fp32, CPU)", "",
             "Measured by `benchmarks/adapters_memory.py` (one subprocess per configuration). "
             "train peak = VmHWM over the training steps (reset after loading); process peak = "
             "ru_maxrss of the whole process; planned = `tunesmith.adapters.plan(...)`.", "",
             "| configuration | batch x seq | train peak GiB | process peak GiB | planned GiB | "
             "planner error | step s |", "|---|---|---|---|---|---|---|"]
    for label, batch, seq, got, planned, error in rows:
        lines.append(f"| {label} | {batch} x {seq} | {got['train_peak'] / 2**30:.2f} | "
                     f"{got['process_peak'] / 2**30:.2f} | {planned / 2**30:.2f} | {error:+.1%} | "
                     f"{got['step_s']:.2f} |")
    lines.append("")
    if rows:
        worst = max(abs(r[5]) for r in rows)
        lines.append(f"- largest planner error: {worst:.1%} over {len(rows)} configurations "
                     "(target <= 15%)")
    if "full" in by_label and "qlora nf4 r16" in by_label:
        full, qlora = by_label["full"][3], by_label["qlora nf4 r16"][3]
        lines.append(f"- QLoRA / full peak: train {qlora['train_peak'] / full['train_peak']:.2f}x, "
                     f"process {qlora['process_peak'] / full['process_peak']:.2f}x (target <= 0.5x)")
        lines.append(f"- QLoRA / full step time: {qlora['step_s'] / full['step_s']:.2f}x")
    if "lora r16" in by_label and "full" in by_label:
        lines.append(f"- LoRA / full peak: "
                     f"{by_label['lora r16'][3]['train_peak'] / by_label['full'][3]['train_peak']:.2f}x")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
