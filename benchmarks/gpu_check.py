"""One GPU check, at most 8 minutes on one H100/H200. Sections (a failure prints "section X skipped:
reason" and the others still run):
  attention  the attention implementation of a built preset, the attention kernels of one forward
  pretrain   MFU of training steps (fwd, bwd, fused AdamW; fp32 weights under bf16 autocast, as the Trainer's
             bf16) of the `base` and `1b` presets through tunesmith's loss code: 6 * params * tokens/s over
             the bf16 matmul rate measured here (8192^3) and over the nominal 989 TFLOP/s
  adapters   LoRA vs QLoRA (NF4) r16 on `1b` through tunesmith.adapters: step time, peak CUDA memory
  sft        tunesmith SFT (packing) vs a plain TRL SFTTrainer (its defaults), same model, data, batch and
             steps (inputs from sft_throughput.py): real tokens/s and the ratio
`--tiny` runs them all on the CPU with the `nano` preset in under a minute (the test suite does).

    PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 python3 benchmarks/gpu_check.py --out gpu_check.json
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

NOMINAL_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 FLOP/s of the SXM parts, no sparsity
LIBS = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "flash-attn")
QUIET = {"TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
         "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Plan:
    device: str
    bf16: bool  # bf16 autocast over fp32 weights (GPU); plain fp32 (CPU)
    pretrain: tuple  # (preset, micro-batch, block) per run
    adapter: tuple  # (preset, batch, seq)
    sft: tuple  # (preset, rows, batch, steps timed after as many untimed ones)
    warmup: int
    steps: int
    matmul_n: int


GPU = Plan("cuda", True, (("base", 16, 1024), ("1b", 8, 2048)), ("1b", 4, 2048), ("base", 800, 16, 20),
           warmup=3, steps=10, matmul_n=8192)
TINY = Plan("cpu", False, (("nano", 2, 64),), ("nano", 2, 64), ("nano", 48, 4, 2), warmup=1, steps=2, matmul_n=512)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _peak_gib(device: str, reset: bool = False) -> float | None:
    """Peak CUDA memory since the last reset (None on the CPU); `reset=True` starts a new peak."""
    if device == "cuda" and reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _measure(model, opt, ids, plan: Plan, loss_fn) -> tuple[float, float | None]:
    """(median seconds of a training step over plan.steps after plan.warmup untimed ones, peak GiB)."""
    sync = torch.cuda.synchronize if plan.device == "cuda" else lambda: None
    _peak_gib(plan.device, reset=True)
    times = []
    for i in range(plan.warmup + plan.steps):
        sync()
        t = time.perf_counter()
        with torch.autocast(plan.device, dtype=torch.bfloat16, enabled=plan.bf16):
            loss = loss_fn(model, ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i >= plan.warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times), _peak_gib(plan.device)


def _new_model(size: str, device: str):
    """A fresh llama preset, its weights made directly on `device` (a fast init of 1B on a GPU)."""
    from tunesmith.pretraining.presets import build_model

    torch.manual_seed(0)
    with torch.device(device):
        return build_model("llama", size)


def _matmul_rate(plan: Plan) -> float:
    """Dense matmul FLOP/s of the training dtype: bf16 on the GPU (mean of 10 after 3 warm-ups),
    fp32 on the CPU (tunesmith's probe)."""
    if plan.device == "cpu":
        from tunesmith.core.device import cpu_matmul_rates
        return cpu_matmul_rates(plan.matmul_n)["fp32"]
    n = plan.matmul_n
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for i in range(13):
        if i == 3:
            torch.cuda.synchronize()
            t = time.perf_counter()
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * n ** 3 / (time.perf_counter() - t)


def attention(plan: Plan) -> dict:
    from torch.profiler import ProfilerActivity, profile

    model = _new_model(plan.pretrain[0][0], plan.device)
    ids = torch.randint(0, model.config.vocab_size, (2, 128), device=plan.device)
    with torch.no_grad(), torch.autocast(plan.device, dtype=torch.bfloat16, enabled=plan.bf16), \
            profile(activities=[ProfilerActivity.CPU]) as prof:
        model(input_ids=ids)
    kernels = sorted({e.key for e in prof.key_averages() if e.key != "aten::scaled_dot_product_attention"
                      and ("scaled_dot_product" in e.key or "flash" in e.key.lower())})
    out = {"attn_implementation": model.config._attn_implementation, "kernels": kernels,
           "flash_attn": "installed" if importlib.util.find_spec("flash_attn") else "not installed"}
    out["rows"] = [["attention", "llama preset, one forward", f"{out['attn_implementation']}; kernels: "
                    f"{', '.join(kernels) or 'none seen'}; flash_attn {out['flash_attn']}"]]
    return out


def _pretrain_run(size: str, batch: int, block: int, plan: Plan, peaks: dict) -> dict:
    from tunesmith.pretraining.mtp import causal_lm_losses
    from tunesmith.pretraining.presets import count_parameters

    model = _new_model(size, plan.device)
    params = count_parameters(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=plan.device == "cuda")
    ids = torch.randint(0, model.config.vocab_size, (batch, block), device=plan.device)
    sec, peak_gib = _measure(model, opt, ids, plan, lambda m, x: causal_lm_losses(m, x, x)[0])
    mfu = {k: 6 * params * batch * block / sec / v for k, v in peaks.items()}
    precision = "bf16 autocast, fp32 weights, fused AdamW" if plan.bf16 else "fp32, AdamW"
    mfus = ", ".join(f"{v:.1%} of {k} {_rate(peaks[k])}" for k, v in mfu.items())
    return {"preset": size, "params": params, "batch": batch, "block": block, "step_s": sec,
            "tokens_per_s": batch * block / sec, "mfu": mfu, "peak_gib": peak_gib,
            "attn_implementation": model.config._attn_implementation,
            "rows": [[f"pretrain MFU {size}", f"{params / 1e6:.1f}M params, {batch}x{block} tokens, {precision}",
                    f"{batch * block / sec:,.0f} tok/s, {sec:.3f} s/step, MFU {mfus}; peak {_gib(peak_gib)}"]]}


def pretrain(plan: Plan) -> dict:
    gpu = torch.cuda.get_device_name() if plan.device == "cuda" else ""
    peaks = {"measured": _matmul_rate(plan), **{"nominal": v for k, v in NOMINAL_BF16.items() if k in gpu}}
    runs = [run_section(f"pretrain MFU {size}", lambda: _pretrain_run(size, batch, block, plan, peaks))
            for size, batch, block in plan.pretrain]
    return {"peak_flops": peaks, "parts": runs}


def _tunesmith_adapter(folder: str, method: str, device: str):
    """tunesmith's path: load_base (NF4 for qlora, placed on the GPU by transformers), apply, optimizer."""
    from tunesmith.adapters import AdapterConfig, apply, build_optimizer, load_base

    cfg = AdapterConfig(method=method)
    model = load_base(folder, cfg)
    if method == "lora":
        model.to(device)
    model = apply(model, cfg)
    return model, build_optimizer(model, cfg, lr=1e-4), "tunesmith.adapters"


def _peft_adapter(folder: str, method: str, device: str):
    """The fallback: peft + bitsandbytes directly, as their docs show."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype) if method == "qlora" else None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, quantization_config=quant,
                                                 device_map={"": device})
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"))
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4), "peft directly"


def _adapter_run(folder: str, method: str, plan: Plan, batch: int, seq: int) -> dict:
    from tunesmith.adapters import trainable_summary

    try:
        model, opt, via = _tunesmith_adapter(folder, method, plan.device)
    except Exception as e:  # noqa: BLE001 - the direct path may still measure it
        print(f"  {method}: tunesmith.adapters failed ({type(e).__name__}: {e}); trying peft directly", flush=True)
        _free()
        model, opt, via = _peft_adapter(folder, method, plan.device)
    model.train()
    ids = torch.randint(3, model.config.vocab_size, (batch, seq), device=plan.device)
    loaded = torch.cuda.memory_allocated() / 2**30 if plan.device == "cuda" else None
    sec, peak_gib = _measure(model, opt, ids, plan, lambda m, x: m(input_ids=x, labels=x).loss)
    out = {"method": method, "via": via, "step_s": sec, "tokens_per_s": batch * seq / sec, "peak_gib": peak_gib,
           "loaded_gib": loaded, "trainable": trainable_summary(model)["trainable"],
           "rows": [[f"{method} r16 {plan.adapter[0]}", f"{batch}x{seq} tokens, via {via}", f"{sec:.3f} s/step, "
                   f"{batch * seq / sec:,.0f} tok/s, peak {_gib(peak_gib)} (after loading {_gib(loaded)})"]]}
    return out


def adapters(plan: Plan) -> dict:
    from tunesmith.pretraining.presets import count_parameters

    size, batch, seq = plan.adapter
    out = {"preset": size, "batch": batch, "seq": seq}
    with tempfile.TemporaryDirectory(prefix="gpu-check-adapters-") as folder:
        model = _new_model(size, plan.device).to(torch.bfloat16 if plan.bf16 else torch.float32)
        out["params"] = count_parameters(model)
        model.save_pretrained(folder)  # in the training dtype, which LoRA's base loads in
        del model  # out of the peaks below
        out["parts"] = [run_section(f"{m} r16 {size}", lambda: _adapter_run(folder, m, plan, batch, seq))
                        for m in ("lora", "qlora")]
    return out


def _log_clock():
    """A TrainerCallback noting (time, TRL's cumulative real-token count) at each log."""
    from transformers import TrainerCallback

    class LogClock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                self.marks.append((time.perf_counter(), logs["num_tokens"]))
    return LogClock()


def _sft_trl(model_dir: Path, data: Path, plan: Plan, batch: int, every: int, folder: Path) -> dict:
    import trl
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.data.chat import CHATML_TEMPLATE

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.chat_template = tok.chat_template or CHATML_TEMPLATE
    args = trl.SFTConfig(output_dir=str(folder / "trl-run"), max_steps=2 * every, per_device_train_batch_size=batch,
                         report_to=[], use_cpu=plan.device == "cpu", bf16=plan.bf16, save_strategy="no",
                         logging_steps=every)
    clock = _log_clock()
    trainer = trl.SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, callbacks=[clock],
                             train_dataset=load_dataset("json", data_files=str(data), split="train"),
                             processing_class=tok)
    real = padded = 0
    for i, b in enumerate(trainer.get_train_dataloader()):  # batches like the timed ones, for the padding share
        if i == 2 * every:
            break
        real, padded = real + int(b["attention_mask"].sum()), padded + b["attention_mask"].numel()
    _peak_gib(plan.device, reset=True)
    trainer.train()
    (t0, n0), (t1, n1) = clock.marks[-2:]
    return {"tokens_per_s": (n1 - n0) / (t1 - t0), "padding_fraction": 1 - real / padded,
            "gradient_checkpointing": bool(args.gradient_checkpointing), "peak_gib": _peak_gib(plan.device)}


def _sft_tunesmith(model_dir: Path, data: Path, plan: Plan, batch: int, every: int, folder: Path) -> dict:
    from tunesmith.alignment.sft import sft as tunesmith_sft

    train = {"max_steps": 2 * every, "batch_size": batch, "dtype": "bf16" if plan.bf16 else "fp32",
             "warmup_steps": 0, "logging_steps": every, "save_steps": 10_000, "eval_steps": 10_000}
    _peak_gib(plan.device, reset=True)
    run = folder / "ts-run"
    tunesmith_sft(model={"path": str(model_dir)}, adapter={"method": "full"}, train=train,
                  data={"inputs": [{"path": str(data)}]}, sft={"max_length": 512, "batching": "packing"},
                  run={"dir": str(run), "overwrite": True})
    logs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # MetricsLogger: tokens_per_s = real tokens trained since the previous line / its seconds
    last = [x for x in logs if "tokens_per_s" in x][-1]
    return {"tokens_per_s": last["tokens_per_s"], "padding_fraction": 0.0,
            "peak_gib": _peak_gib(plan.device)}


def sft(plan: Plan) -> dict:
    """Each side times its second half of steps: from its log at `every` steps to the one at 2x."""
    import sft_throughput  # benchmarks/, beside this file

    size, rows, batch, every = plan.sft
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-sft-"))
    try:
        model_dir, data = sft_throughput.make_inputs(folder, size, rows, 1024)  # the preset, its tokenizer, chat rows
        out = {"preset": size, "chat_rows": rows, "batch": batch, "timed_steps": every}
        out["trl"] = _sft_trl(model_dir, data, plan, batch, every, folder)
        _free()
        out["tunesmith"] = _sft_tunesmith(model_dir, data, plan, batch, every, folder)
        t, s = out["trl"], out["tunesmith"]
        out["ratio"] = s["tokens_per_s"] / t["tokens_per_s"]
        out["rows"] = [["SFT tokens/s", f"{size} preset, batch {batch}, {every} timed steps",
                        f"tunesmith {s['tokens_per_s']:,.0f} vs TRL {t['tokens_per_s']:,.0f} real tok/s = "
                        f"{out['ratio']:.2f}x (TRL padding {t['padding_fraction']:.0%}, gradient checkpointing "
                        f"{t['gradient_checkpointing']}; peak {_gib(s['peak_gib'])} vs {_gib(t['peak_gib'])})"]]
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


SECTIONS = {"attention": attention, "pretrain": pretrain, "adapters": adapters, "sft": sft}


def run_section(name: str, fn, budget_s: float | None = None, started: float = 0.0) -> dict:
    """fn()'s result with its seconds, or {"skipped": reason} (one line printed) if it raises or time is up."""
    if budget_s is not None and time.perf_counter() - started > budget_s:
        reason = f"time guard: {time.perf_counter() - started:.0f} s spent of the {budget_s:.0f} s budget"
        print(f"section {name} skipped: {reason}", flush=True)
        return {"name": name, "skipped": reason}
    t = time.perf_counter()
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - one section's failure must not stop the others
        reason = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
        print(f"section {name} skipped: {reason}", flush=True)
        return {"name": name, "skipped": reason, "seconds": time.perf_counter() - t}
    finally:
        _free()  # the section's models are gone by now: give their memory back
    result["seconds"] = time.perf_counter() - t
    print(f"section {name}: {result['seconds']:.1f} s", *("  " + " | ".join(r) for r in result.get("rows", [])),
          sep="\n", flush=True)
    return result


def environment(plan: Plan) -> dict:
    versions = {}
    for d in importlib.metadata.distributions():  # in sys.path order: the first one is the one imported
        versions.setdefault(d.metadata["Name"].lower().replace("_", "-"), d.version)
    env = {"python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
           **{lib: versions.get(lib, "not installed") for lib in LIBS}}
    if plan.device == "cpu":
        return {**env, "gpu": f"no GPU (CPU, {torch.get_num_threads()} threads)"}
    props = torch.cuda.get_device_properties(0)
    return {**env, "gpu": f"{props.name} ({props.total_memory / 2**30:.0f} GiB)", "cuda": torch.version.cuda}


def _rows(r: dict) -> list:
    """A result's (check, setting, result) table rows, its parts' for a section of several parts."""
    if "skipped" in r:
        return [[r["name"], "", f"skipped: {r['skipped']}"]]
    return r.get("rows") or [row for part in r["parts"] for row in _rows(part)]


def _rate(flops: float) -> str:
    return f"{flops / 1e12:.0f} TFLOP/s" if flops >= 1e12 else f"{flops / 1e9:.1f} GFLOP/s"


def _gib(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} GiB"


def markdown(report: dict) -> str:
    e = report["env"]
    lines = [f"`benchmarks/gpu_check.py{' --tiny' if report['tiny'] else ''}`, {e['date']}: {e['gpu']}"
             + (f", CUDA {e['cuda']}" if "cuda" in e else "") + f"; Python {e['python']}, "
             + ", ".join(f"{k} {e[k]}" for k in LIBS) + f"; {report['total_s']:.0f} s in all.", "",
             "| check | setting | result |", "|---|---|---|"]
    for r in report["sections"].values():
        lines += [f"| {a} | {b} | {c} |" for a, b, c in _rows(r)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU, nano preset, 1-2 steps: proves every section runs")
    p.add_argument("--out", help="also write every result as JSON here")
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), help="a subset")
    p.add_argument("--budget-s", type=float, default=420, help="sections that would start later are skipped")
    a = p.parse_args(argv)
    for k, v in QUIET.items():
        os.environ.setdefault(k, v)
    if not a.tiny and not torch.cuda.is_available():
        p.error("no CUDA device here: use --tiny on a CPU")
    plan, started = (TINY if a.tiny else GPU), time.perf_counter()
    report = {"tiny": a.tiny, "env": environment(plan), "plan": asdict(plan), "sections": {}}
    print(json.dumps(report["env"]), flush=True)
    for name in a.sections:
        print(f"== {name} (at {time.perf_counter() - started:.0f} s)", flush=True)
        report["sections"][name] = run_section(name, lambda: SECTIONS[name](plan), a.budget_s, started)
    report["total_s"] = time.perf_counter() - started  # each section printed its results as it went
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1))
    print("\n" + markdown(report), flush=True)
    return report


if __name__ == "__main__":
    main()
