"""Peak memory and step time of full / LoRA / QLoRA-4bit / 8-bit training, against the planner.

Each configuration runs in its own fresh subprocess, so allocations of one never count in
another. Two peaks are read from /proc: the whole process (ru_maxrss at exit, loading
included) and the training phase (VmHWM reset through /proc/self/clear_refs after loading
and building the optimizer; this is what `plan` predicts). Every configuration trains the
same batch shape; two steps, so the second forward runs with the optimizer state allocated.
`--count` prints instead the bytes autograd saves per token (saved-tensor hooks), which is
where the planner's activation coefficients come from.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python benchmarks/adapters_memory.py --size base
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/adapters_memory.py --count
    python benchmarks/adapters_memory.py --tiny    # seconds: nano preset, LoRA only, report in a temp folder
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

NOTES = "## Notes"  # the hand-written part of the report from this heading on is kept
BATCH, SEQ = 4, 256  # one fine-tuning batch shape for every configuration
CONFIGS = [  # (label, adapter block)
    ("full", {"method": "full"}),
    ("full + checkpointing", {"method": "full", "gradient_checkpointing": True}),
    ("full + adamw_8bit", {"method": "full", "optimizer": "adamw_8bit"}),
    ("lora r16", {"method": "lora"}),
    ("lora r16 + checkpointing", {"method": "lora", "gradient_checkpointing": True}),
    ("qlora nf4 r16", {"method": "qlora"}),
    ("qlora nf4 r16 + checkpointing", {"method": "qlora", "gradient_checkpointing": True}),
    ("lora on int8 base", {"method": "lora", "quantize": "int8"}),
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
    adapter = dict(adapter)
    ckpt = adapter.pop("gradient_checkpointing", False)
    cfg = AdapterConfig(**adapter)
    model = apply(load_base(folder, cfg, dtype="float32"), cfg, gradient_checkpointing=ckpt)
    model.train()
    opt = build_optimizer(model, cfg, lr=1e-4)
    ids = torch.randint(3, model.config.vocab_size, (batch, seq))
    loaded = _kib("VmRSS") * 1024
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: measure training only
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"train_peak": _kib("VmHWM") * 1024, "loaded": loaded,
            "step_s": sum(times[1:]) / max(1, len(times) - 1), "loss": float(loss)}


def count_saved(folder: str, adapter: dict, batch: int, seq: int) -> int:
    """Bytes of the tensors autograd keeps for backward after one forward (weights excluded)."""
    import torch
    from tunesmith.adapters import AdapterConfig, apply, load_base
    adapter = dict(adapter)
    ckpt = adapter.pop("gradient_checkpointing", False)
    cfg = AdapterConfig(**adapter)
    model = apply(load_base(folder, cfg, dtype="float32"), cfg, gradient_checkpointing=ckpt)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def keep(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t
    ids = torch.randint(3, model.config.vocab_size, (batch, seq))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=ids, labels=ids)
    return sum(n for ptr, n in seen.items() if ptr not in params)


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
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--seq", type=int, default=SEQ)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "adapters.md"))
    parser.add_argument("--only", nargs="*", help="labels of the configurations to run")
    parser.add_argument("--count", action="store_true", help="print saved bytes per token and stop")
    parser.add_argument("--replan", action="store_true",
                        help="rewrite the report from the measurements saved next to it (no training)")
    parser.add_argument("--tiny", action="store_true",
                        help="seconds: nano preset, lora r16 only, batch 2 x 32, the report in a temp folder")
    args = parser.parse_args()
    if args.tiny:
        args.size, args.only, args.batch, args.seq, args.steps = "nano", ["lora r16"], 2, 32, 2
        args.out = str(Path(tempfile.mkdtemp(prefix="adapters-tiny-")) / "adapters.md")
    raw = Path(args.out).with_suffix(".json")

    from tunesmith.adapters import AdapterConfig
    from tunesmith.adapters.planner import plan
    from tunesmith.pretraining.presets import build_model, count_parameters

    rows = []
    started = time.time()
    saved = json.loads(raw.read_text()) if args.replan else {}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model("llama", args.size)
        n_params = count_parameters(model)
        model.config.save_pretrained(tmp)
        if not args.replan:
            model.save_pretrained(tmp)
        del model
        for label, adapter in CONFIGS:
            if args.only and label not in args.only or args.replan and label not in saved["runs"]:
                continue
            if args.count:
                saved = count_saved(tmp, adapter, args.batch, args.seq)
                print(f"{label:32s} saved {saved / 2**20:8.1f} MiB = "
                      f"{saved / (args.batch * args.seq):9.0f} bytes per token", flush=True)
                continue
            got = saved["runs"][label] if args.replan else measure(tmp, adapter, args.batch, args.seq, args.steps)
            settings = dict(adapter)
            ckpt = settings.pop("gradient_checkpointing", False)
            predicted = plan(tmp, AdapterConfig(**settings), batch_size=args.batch, seq_len=args.seq,
                             gradient_checkpointing=ckpt)
            error = (predicted.total - got["train_peak"]) / got["train_peak"]
            rows.append((label, got, predicted, error))
            print(f"{label:32s} train peak {got['train_peak'] / 2**30:6.2f} GiB  process peak "
                  f"{got['process_peak'] / 2**30:6.2f} GiB  planned {predicted.total / 2**30:6.2f} GiB "
                  f"({error:+.1%})  step {got['step_s']:.1f}s", flush=True)
    if rows and not args.replan:
        raw.write_text(json.dumps({"seconds": time.time() - started, "date": time.strftime("%Y-%m-%d %H:%M"),
                                   "runs": {r[0]: r[1] for r in rows}}, indent=1))
    if rows:
        write_report(Path(args.out), args, n_params, rows,
                     saved.get("seconds", time.time() - started), saved.get("date"))


def _ratio(by_label: dict, num: str, den: str, key: str) -> str:
    if num in by_label and den in by_label:
        return f"{by_label[num][1][key] / by_label[den][1][key]:.2f}x"
    return "n/a"


def write_report(out: Path, args, n_params: int, rows: list, seconds: float, date: str | None) -> None:
    import platform
    by_label = {r[0]: r for r in rows}
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    lines = [f"# Adapters: memory and step time (llama `{args.size}`, {n_params / 1e6:.1f}M parameters, "
             "fp32, CPU)", "",
             f"Measured by `benchmarks/adapters_memory.py` on {date or time.strftime('%Y-%m-%d %H:%M')}: {cpu}, "
             f"{os.cpu_count()} cores (shared with other jobs), batch {args.batch} x {args.seq} tokens "
             f"for every configuration, {args.steps} steps, one fresh subprocess per configuration, "
             f"{seconds / 60:.0f} min in all. train peak = VmHWM over the training steps (reset after "
             "loading); process peak = ru_maxrss of the whole process (loading included); "
             "planned = `tunesmith.adapters.plan(...)`, which predicts the train peak.", "",
             "| configuration | train peak GiB | process peak GiB | planned GiB | planner error | "
             "step s |", "|---|---|---|---|---|---|"]
    for label, got, planned, error in rows:
        lines.append(f"| {label} | {got['train_peak'] / 2**30:.2f} | {got['process_peak'] / 2**30:.2f} | "
                     f"{planned.total / 2**30:.2f} | {error:+.1%} | {got['step_s']:.1f} |")
    within = sum(abs(r[3]) <= 0.15 for r in rows)
    lines += ["", f"- planner within 15%: {within} of {len(rows)} configurations; largest error "
                  f"{max(abs(r[3]) for r in rows):.1%}",
              f"- QLoRA / full peak: {_ratio(by_label, 'qlora nf4 r16', 'full', 'train_peak')} "
              f"(both with checkpointing: "
              f"{_ratio(by_label, 'qlora nf4 r16 + checkpointing', 'full + checkpointing', 'train_peak')}; "
              f"QLoRA with checkpointing / full without: "
              f"{_ratio(by_label, 'qlora nf4 r16 + checkpointing', 'full', 'train_peak')}); target <= 0.5x",
              f"- LoRA / full peak: {_ratio(by_label, 'lora r16', 'full', 'train_peak')} (both with "
              f"checkpointing: {_ratio(by_label, 'lora r16 + checkpointing', 'full + checkpointing', 'train_peak')})",
              f"- QLoRA / full step time: {_ratio(by_label, 'qlora nf4 r16', 'full', 'step_s')}", "",
              "Planned components (GiB) of each configuration:", "",
              "| configuration | " + " | ".join(rows[0][2].parts) + " | " + " | ".join(rows[0][2].phases)
              + " |", "|---" * (1 + len(rows[0][2].parts) + len(rows[0][2].phases)) + "|"]
    for label, _, planned, _ in rows:
        values = list(planned.parts.values()) + list(planned.phases.values())
        lines.append(f"| {label} | " + " | ".join(f"{v / 2**30:.2f}" for v in values) + " |")
    notes = out.read_text().partition(NOTES)[1:] if out.exists() else ("", "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n" + ("\n" + "".join(notes) if notes[0] else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
