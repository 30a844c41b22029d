"""Device and dtype choice. On CPU, bf16 autocast is fast on some processors (AMX: several times
fp32) and ~100x slower on others (AVX2-only), and where the matmul itself is faster (AVX512-BF16)
the casts around it can still make a small model's step slower and larger. So `train.dtype: auto`
times the step itself: a forward+backward of the actual model on an actual batch, fp32 against
bf16 autocast, with the activation memory each keeps for backward, and caches the decision per
machine kind, model and batch shape (`probe_cache`).

    decision = measure_dtype(model, batch)
    decision["dtype"], decision["seconds"], decision["memory_mb"]
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

# bf16 is chosen when its step is at least this much faster than fp32's, times its activation
# memory growth (a 4x faster step that keeps 1.3x the memory wins; 1.1x faster at 1.3x does not)
MIN_SPEEDUP = 1.15
# after one bf16 step this many times slower than fp32's, the probe stops (AVX2-only CPUs: ~100x)
BAIL_OUT = 3.0
PROBE_VERSION = 2  # 2: the step scores only labelled positions (compat.logits_where_scored); part of every cache key: a change of the probe or the rule invalidates old entries


def _matmul_rate(dtype: torch.dtype, n: int = 512, reps: int = 5) -> float:
    """Dense matmul FLOP/s for `dtype` on the CPU (best of `reps`)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


@functools.lru_cache(maxsize=None)
def cpu_matmul_rates(n: int = 512) -> dict[str, float]:
    """Peak matmul FLOP/s per dtype (what MFU figures divide by; no longer what picks the dtype)."""
    return {"fp32": _matmul_rate(torch.float32, n), "bf16": _matmul_rate(torch.bfloat16, n)}


def decide(seconds: dict[str, float], memory: dict[str, float], available: float | None = None) -> str:
    """'bf16' or 'fp32' from one step's time and activation memory per dtype (bf16 may be absent:
    the probe stopped after one slow step). bf16 needs a step at least MIN_SPEEDUP times faster,
    scaled by how much more memory it keeps; when only bf16's activations fit in `available`
    bytes, bf16."""
    if "bf16" not in seconds:
        return "fp32"
    if available is not None and memory["fp32"] > available >= memory["bf16"]:
        return "bf16"
    growth = max(1.0, memory["bf16"] / max(memory["fp32"], 1.0))
    return "bf16" if seconds["fp32"] / seconds["bf16"] >= MIN_SPEEDUP * growth else "fp32"


def probe_dtypes(step: Callable[[str], tuple[float, float]], repeats: int = 5, budget_s: float = 3.0,
                 available: float | None = None) -> dict[str, Any]:
    """Run `step(dtype) -> (seconds, activation bytes)` for fp32 and bf16 and decide. One warm-up
    step each, then timed steps alternating (so a load that comes and goes on a shared machine
    falls on both; the best time of each counts): at least one pair, at most `repeats`, while the
    timed pairs take under `budget_s`.
    When bf16's warm-up is `BAIL_OUT` times slower than fp32's, the probe stops there: fp32
    (AVX2-only CPUs, where one bf16 step is ~100x fp32's). Returns {"dtype", "seconds",
    "memory_mb", "steps", "bailed_out"}."""
    first: dict[str, float] = {}
    memory: dict[str, float] = {}
    steps = {"fp32": 0, "bf16": 0}
    for dtype in ("fp32", "bf16"):
        first[dtype], memory[dtype] = step(dtype)
        steps[dtype] += 1
    bailed = first["bf16"] > BAIL_OUT * first["fp32"]
    seconds = dict(first)
    if not bailed:
        timed: dict[str, list[float]] = {"fp32": [], "bf16": []}
        start = time.perf_counter()
        for i in range(max(1, repeats)):
            if i and time.perf_counter() - start > budget_s:
                break
            for dtype in ("fp32", "bf16"):
                t, mem = step(dtype)
                steps[dtype] += 1
                timed[dtype].append(t)
                memory[dtype] = max(memory[dtype], mem)
        seconds = {k: min(v) if v else first[k] for k, v in timed.items()}
    choice = "fp32" if bailed else decide(seconds, memory, available)
    return {"dtype": choice, "seconds": {k: round(v, 5) for k, v in seconds.items()},
            "memory_mb": {k: round(v / 2 ** 20, 2) for k, v in memory.items()}, "steps": steps,
            "bailed_out": bailed}


def prompt_learning(model: Any) -> bool:
    """Whether `model` is a PEFT prompt-learning model (prompt or prefix tuning): its wrapper adds
    virtual tokens, so the backbone alone or positions counted on the input miss them."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def step_loss(model: Any, batch: dict) -> torch.Tensor:
    """The loss of one forward of `model` on `batch` as the stages train: with token labels on a
    causal LM, the LM head only where a label counts (`compat.logits_where_scored`, what SFT and
    the preference stages train through `compat.plain_lm_head`; pretraining's labels count
    everywhere), so the probes keep the activations training keeps; otherwise (PEFT prompt
    learning, whose virtual tokens only the wrapper adds, too) the model's own loss, or the mean
    of its logits."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from ..compat import logits_where_scored, plain_head_applies

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels, ids = batch.get("labels"), batch.get("input_ids")
    if labels is not None and ids is not None and labels.shape == ids.shape and not prompt_learning(model) \
            and type(target).__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() and plain_head_applies(target):
        logits, picked, _ = logits_where_scored(target, labels, **{k: v for k, v in batch.items() if k != "labels"})
        return torch.nn.functional.cross_entropy(logits.float(), picked)
    out = model(**batch)
    loss = getattr(out, "loss", None)
    if loss is not None:
        return loss
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits.float().mean()


def model_step(model: Any, batch: dict[str, torch.Tensor]) -> Callable[[str], tuple[float, float]]:
    """`step(dtype) -> (seconds, bytes)`: one forward+backward of `model` on `batch` in fp32 or
    under bf16 autocast (what the Trainer's `bf16=True` runs), timed; bytes are the tensors autograd
    keeps for backward (each storage once). Gradients are dropped after each step."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}

    def step(dtype: str) -> tuple[float, float]:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            try:
                storage = t.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
            except (RuntimeError, NotImplementedError):
                pass
            return t

        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = step_loss(model, batch)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        model.zero_grad(set_to_none=True)
        return seconds, float(sum(seen.values()))

    return step


def machine_kind() -> str:
    """The processor a decision holds for: CPU model and instruction-set flags (or the GPU's
    name), threads, torch version."""
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}|torch {torch.__version__}"
    name, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = " ".join(sorted(value.split()))
            if name and flags:
                break
    except OSError:
        pass
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"cpu:{name}|flags {digest}|threads {torch.get_num_threads()}|torch {torch.__version__}"


def probe_cache() -> Path:
    """Where measured decisions are kept: $TUNESMITH_CACHE_DIR, else $XDG_CACHE_HOME/tunesmith,
    else ~/.cache/tunesmith; the file `probes.json`."""
    root = os.environ.get("TUNESMITH_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunesmith"
    return Path(root) / "probes.json"


def model_key(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """What a step's cost depends on besides the machine: the model's config, which weights
    train, whether it recomputes activations, and the batch's shapes."""
    config = getattr(model, "config", None)
    described = config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"model": hashlib.sha256(described.encode()).hexdigest()[:16], "trainable": trainable,
            "class": type(model).__name__,
            "recompute": bool(getattr(base, "is_activation_checkpointing", False)),
            "shapes": {k: list(v.shape) for k, v in sorted(batch.items()) if hasattr(v, "shape")}}


def cached(kind: str, key: dict[str, Any], compute: Callable[[], dict], path: Path | None = None) -> dict:
    """`compute()` once per (`kind`, machine, `key`): later calls read it back from `probe_cache()`
    with `"cached": True`. An unreadable cache is recomputed; a failed write is ignored."""
    path = path or probe_cache()
    full = json.dumps({"kind": kind, "machine": machine_kind(), "version": PROBE_VERSION, **key}, sort_keys=True)
    digest = hashlib.sha256(full.encode()).hexdigest()
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    if isinstance(entries, dict) and isinstance(entries.get(digest), dict):
        return {**entries[digest], "cached": True}
    value = compute()
    entries = entries if isinstance(entries, dict) else {}
    entries[digest] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass
    return {**value, "cached": False}


def _available_bytes() -> float | None:
    if torch.cuda.is_available():
        return float(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def probing(model: Any) -> Iterator[None]:
    """Around the probes' training steps: the model in training mode, then back as it was, and the
    random state untouched (the run's data order and dropout stay what they would be without them)."""
    with torch.random.fork_rng(devices=[]):
        was_training = model.training
        model.train()
        try:
            yield
        finally:
            model.train(was_training)


def measure_dtype(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The `train.dtype: auto` decision for `model` training on batches shaped like `batch`
    (see the module docstring), cached; the random state is left as it was."""
    def compute() -> dict:
        with probing(model):
            return probe_dtypes(model_step(model, batch), available=_available_bytes())

    start = time.perf_counter()
    decision = cached("dtype", model_key(model, batch), compute)
    return {**decision, "probe_seconds": round(time.perf_counter() - start, 2)}


# `train.gradient_checkpointing: auto`: recompute activations when one micro-batch keeps at least
# this much for backward and it outweighs (or does not fit beside) the rest of training's memory
CHECKPOINT_MIN_BYTES = 256 * 2 ** 20


def should_checkpoint(activations: float, state: float, available: float | None = None) -> bool:
    """Whether `auto` recomputes activations: they are at least CHECKPOINT_MIN_BYTES (below that
    the memory saved cannot matter and the ~1/3 more compute does) and either at least `state`
    (weights, gradients and optimizer state: activations are most of the footprint, where TRL,
    axolotl and unsloth checkpoint by default) or too much to fit beside it in `available`."""
    if activations < CHECKPOINT_MIN_BYTES:
        return False
    return activations >= state or (available is not None and state + activations > available)


def training_state_bytes(model: Any) -> float:
    """Weights (each once, in their dtype) plus fp32 gradients and AdamW's two moments for every
    trainable parameter: what training holds besides activations."""
    params = {id(p): p for p in model.parameters()}.values()
    return float(sum(p.numel() * p.element_size() + (12 * p.numel() if p.requires_grad else 0) for p in params))


def measure_activations(model: Any, batch: dict[str, torch.Tensor], dtype: str) -> dict[str, Any]:
    """The bytes autograd keeps for one forward+backward of `model` on `batch` in `dtype` (one
    step, cached per machine, model and shape; the random state is left as it was). A step that
    runs out of GPU memory is recorded as `out_of_memory` (the activations do not fit)."""
    def compute() -> dict:
        with probing(model):
            try:
                _, kept = model_step(model, batch)(dtype)
                return {"memory_mb": round(kept / 2 ** 20, 2)}
            except torch.OutOfMemoryError:
                model.zero_grad(set_to_none=True)
                return {"out_of_memory": True}

    return cached("activations", {**model_key(model, batch), "dtype": dtype}, compute)


def pick_dtype(requested: str = "auto", model: Any = None, batch: dict | None = None) -> str:
    """'fp32' or 'bf16'. An explicit choice is kept. auto: on GPU, bf16 where supported; on CPU,
    `measure_dtype(model, batch)` (fp32 when no model is given)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if model is None or batch is None:
        return "fp32"
    return measure_dtype(model, batch)["dtype"]
