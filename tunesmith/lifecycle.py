"""One stage lifecycle, owned here; each stage supplies only what differs.

    run directory (checked, not made) -> malloc keeps freed memory (compat.keep_freed_heap) ->
    load inputs -> the run starts (config.yaml,
    environment.json) -> trainer -> measure before -> train (checkpoints; --resume from the last
    complete one) -> measure after -> save the artifact -> results.json -> peak memory, report,
    optional Hub push -> the result

A stage calls `run_stage(name, cfg, load, build)`:
- `load(run, dtype)` loads and checks every input (model, tokenizer, data) and returns them in
  any shape the stage likes. It runs on the main process first (the others then reuse what it
  prepared) and before anything is written into the run directory, so bad input leaves an
  existing run untouched. It may return `environment` (a dict, as attribute) for environment.json.
  `dtype` is `train.dtype` as requested ("auto" is resolved after `load`, on the loaded model:
  `choose_dtype`); a stage may return `probe_batch` (a batch as it trains on) and `probe_context`
  (what the model trains inside) for that measurement.
- `build(loaded, run, dtype, resuming)` returns a `Training`: the trainer, the metrics measured
  before training, and how to measure after it; the lifecycle adds the callbacks every stage
  shares (metrics.jsonl, checkpoint completion marker, non-finite guard, live loggers), the
  progress bar, and the count of real (non-padding) tokens every stage's tokens/s is read from.

`cfg` is the stage's config: its `run`, `train`, `push_to_hub` and (when present) `adapter` and
`model.path` sections are read here.
"""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from transformers import TrainerCallback, set_seed

from .compat import keep_freed_heap
from .core.callbacks import MetricsLogger, NonFiniteGuard, console_progress
from .core.checkpoints import MarkComplete, last_checkpoint
from .core.device import pick_dtype
from .core.distributed import main_process_first
from .core.result import StageResult
from .core.rundir import RunDir, atomic_dir, default_run_dir
from .core.trainer_args import batch_layout
from .core.training import run_training


@dataclass
class Training:
    """What a stage hands the lifecycle once its inputs have loaded."""

    trainer: Any
    # metrics measured before training: a dict, or a function the lifecycle calls once the trainer has
    # its callbacks (so an evaluation it runs is logged to metrics.jsonl)
    before: dict | Callable[[], dict] = field(default_factory=dict)
    after: Callable[[Any], dict] | None = None  # metrics of the trained model (gets trainer.model)
    save: Callable[[RunDir, Any], Path] | None = None  # default: `save_output` (adapter or full model)
    finish: Callable[[Any], dict] | None = None  # extra results.json keys and result fields (e.g. sample)


def open_run(run_cfg: Any, stage: str) -> RunDir:
    """The stage's run directory, checked but not yet made (see the module docstring)."""
    return RunDir.create(run_cfg.dir or default_run_dir(stage), resume=run_cfg.resume,
                         overwrite=run_cfg.overwrite, make=False)


def resume_checkpoint(run: RunDir, resume: bool) -> Path | None:
    """With `resume`, the last complete checkpoint, metrics.jsonl cut back to its step (so no
    step is logged twice; with no checkpoint yet training starts over, and so does metrics.jsonl);
    otherwise None (train from the start)."""
    ckpt = last_checkpoint(run.checkpoints) if resume else None
    if resume:
        run.truncate_metrics_after(int(ckpt.name.split("-")[-1]) if ckpt is not None else -1)
    return ckpt


def run_stage(stage: str, cfg: Any, load: Callable[[RunDir, str], Any],
              build: Callable[[Any, RunDir, str, bool], Training],
              result_cls: type[StageResult] = StageResult) -> StageResult:
    """Run one training stage through the lifecycle (see the module docstring)."""
    run = open_run(cfg.run, stage)
    batch_layout(cfg.train)  # a batch that does not split over micro-batches and processes: before anything
    set_seed(cfg.train.seed)
    heap = keep_freed_heap()  # every step reuses freed memory instead of faulting in new pages
    with _removed_on_failure(run):  # a run that fails before training leaves no folder behind
        with main_process_first():  # the others reuse what it prepared (the dtype probe's cache too)
            loaded = load(run, cfg.train.dtype)
            checkpointing = choose_checkpointing(cfg.train, loaded)  # first: the dtype probe times what trains
            dtype, probe = choose_dtype(cfg.train, loaded)
        environment = dict(getattr(loaded, "environment", {}))
        if probe is not None:
            environment["dtype_probe"] = probe
        if checkpointing is not None:
            environment["activation_checkpointing"] = checkpointing
        if heap is not None:
            environment["heap"] = heap
        run.start(cfg, seed=cfg.train.seed, dtype=dtype, **environment)
        resume = resume_checkpoint(run, cfg.run.resume)
        plan = build(loaded, run, dtype, resume is not None)
    trainer = plan.trainer
    adapter = getattr(cfg, "adapter", None)
    if adapter is not None:
        from .compat import keep_adapter_dtype

        keep_adapter_dtype(trainer.model, adapter)
        use_adapter_optimizer(trainer, adapter, cfg.train)
    from .compat import count_real_tokens

    count_real_tokens(trainer)
    for callback in training_callbacks(run, cfg.train):
        trainer.add_callback(callback)
    console_progress(trainer)  # a bar on stderr; metrics go to metrics.jsonl

    try:
        metrics = plan.before() if callable(plan.before) else dict(plan.before)
        t0 = time.perf_counter()
        out = run_training(trainer, resume)
        metrics.update(train_seconds=round(time.perf_counter() - t0, 2), train_loss=out.training_loss,
                       steps=trainer.state.global_step, train_tokens=trainer.state.num_input_tokens_seen)
        if plan.after is not None:
            metrics.update(plan.after(trainer.model))
        save = plan.save or (lambda run_, model: save_output(run_, model, trainer.processing_class, adapter,
                                                             cfg.model.path))
        path = save(run, trainer.model)
        extra = plan.finish(trainer.model) if plan.finish is not None else {}
        run.write_json("results.json", {"metrics": metrics, "model_path": str(path), **extra})
    except BaseException:
        if cfg.train.report_to:
            from .report.trackers import fail_trackers

            fail_trackers(run.path)  # the MLflow/W&B runs end as failed now, not at the next stage or exit
        raise
    finish_run(run, trainer.state.global_step, getattr(cfg, "push_to_hub", None))
    return result_cls(run.path, path, metrics, **extra)


def _random_batch(train: Any, model: Any) -> dict:
    """Random tokens for a stage that gives no batch of its own: one micro-batch of the model's
    context, up to 512."""
    import torch

    per_device, _ = batch_layout(train)
    length = min(512, getattr(model.config, "max_position_embeddings", None) or 512)
    vocab = getattr(model.config, "vocab_size", None) or 2
    return {"input_ids": torch.randint(0, vocab, (per_device, length), generator=torch.Generator().manual_seed(0))}


def choose_dtype(train: Any, loaded: Any) -> tuple[str, dict | None]:
    """(dtype, the probe's record or None): `train.dtype` unless auto; auto on CPU measures the
    loaded model's forward+backward in fp32 and bf16 autocast (`core.device.measure_dtype`) on the
    stage's `probe_batch` (else random tokens, one micro-batch of the model's context, up to 512)."""
    import torch

    from .core.device import measure_dtype

    model = getattr(loaded, "model", None)
    if train.dtype != "auto" or torch.cuda.is_available() or model is None:
        return pick_dtype(train.dtype), None
    try:
        with (getattr(loaded, "probe_context", None) or nullcontext)():
            probe = measure_dtype(model, getattr(loaded, "probe_batch", None) or _random_batch(train, model))
    except Exception as e:  # noqa: BLE001 - a model the probe cannot step trains in fp32, as before the probe
        return "fp32", {"dtype": "fp32", "error": f"{type(e).__name__}: {e}"[:300]}
    return probe["dtype"], probe


SHORT_PROBE = 64  # tokens per row of the one step that measures activations when the stage gives no batch
PROBE_ROWS = 2  # rows of the stage's batch that step runs (its activations scaled to the whole batch)


def choose_checkpointing(train: Any, loaded: Any) -> dict | None:
    """`train.gradient_checkpointing: auto` for the loaded model: the stage's decision when it made
    one while loading (SFT decides before it times its batch layouts), else `decide_checkpointing`
    on the stage's probe batch."""
    if hasattr(loaded, "checkpointing"):
        return loaded.checkpointing
    model = getattr(loaded, "model", None)
    return decide_checkpointing(train, model, getattr(loaded, "probe_batch", None),
                                getattr(loaded, "probe_context", None)) if model is not None else None


def decide_checkpointing(train: Any, model: Any, batch: dict | None = None,
                         context: Callable[[], Any] | None = None) -> dict | None:
    """`train.gradient_checkpointing: auto` decided for `model` (an explicit true/false was applied
    when it loaded; None then): the activations one micro-batch keeps for backward, measured in
    fp32 by one forward+backward of `PROBE_ROWS` rows of `batch` (else a `SHORT_PROBE`-token row of
    random tokens) and scaled to the whole micro-batch, against the weights, gradients and
    optimizer state and the free memory (`core.device.should_checkpoint`). When on, the model
    recomputes them from here, before the dtype probe and the batching probe time it, so those
    time the step as it trains and never hold the activations checkpointing avoids. Returns the
    record for environment.json."""
    from .core.device import _available_bytes, measure_activations, should_checkpoint, training_state_bytes
    from .core.distributed import requested_type, world_size

    if train.gradient_checkpointing != "auto" or not hasattr(model, "config"):
        return None
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(target, "supports_gradient_checkpointing", False):
        return {"enabled": False, "requested": "auto", "reason": f"{type(target).__name__} cannot checkpoint"}
    if world_size() > 1 and requested_type() == "FSDP":  # FSDP checkpoints through its own plugin
        return {"enabled": False, "requested": "auto", "reason": "FSDP: set train.gradient_checkpointing: true"}
    if batch is None:  # random tokens: a short row, scaled to the full length (activations grow linearly)
        full = _random_batch(train, model)["input_ids"]
        rows = full[:, :SHORT_PROBE]
        batch, scale = {"input_ids": rows}, full.numel() / rows.numel()
    else:
        count = len(next(iter(batch.values())))
        keep = min(PROBE_ROWS, count)
        batch, scale = {k: v[:keep] for k, v in batch.items()}, count / keep
    try:
        with (context or nullcontext)():
            record = measure_activations(model, batch, "fp32")
    except Exception as e:  # noqa: BLE001 - a model the step cannot run keeps its activations, as before
        return {"enabled": False, "requested": "auto", "error": f"{type(e).__name__}: {e}"[:300]}
    measured = None if record.get("memory_mb") is None else round(record["memory_mb"] * scale, 2)
    state, available = training_state_bytes(model), _available_bytes()
    enabled = measured is None or should_checkpoint(measured * 2 ** 20, state, available)  # None: out of memory
    if enabled:
        target.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return {"enabled": enabled, "requested": "auto", "activations_mb": measured, "measured_in": "fp32",
            "state_mb": round(state / 2 ** 20, 1),
            "available_mb": None if available is None else round(available / 2 ** 20)}


@contextmanager
def _removed_on_failure(run: RunDir) -> Iterator[None]:
    """Remove the run folder when the block fails and the folder did not exist before it (data
    cards, task data and config.yaml written while inputs load). An existing folder (`--resume`,
    `run.overwrite`) keeps what it had: its checkpoints and metrics are only replaced once training
    starts."""
    fresh = not run.path.exists()
    try:
        yield
    except Exception:
        if fresh and run.main:
            shutil.rmtree(run.path, ignore_errors=True)
        raise


def use_adapter_optimizer(trainer: Any, adapter: Any, train: Any) -> None:
    """`adapter.optimizer` (bitsandbytes 8-bit / paged AdamW) and `method: lora_fa` (peft's LoRA-FA
    optimizer) in every stage: the trainer gets that optimizer (it restores its state on resume).
    Plain `adamw` keeps the trainer's own AdamW (with its no-decay groups for biases and norms)."""
    if trainer.optimizer is not None or (adapter.optimizer == "adamw" and adapter.method != "lora_fa"):
        return
    from .adapters.optim import build_optimizer

    trainer.optimizer = build_optimizer(trainer.model, adapter, lr=train.lr, weight_decay=train.weight_decay)


def training_callbacks(run: RunDir, train) -> list[TrainerCallback]:
    """The callbacks every stage's trainer gets: metrics.jsonl, the checkpoint completion
    marker, the non-finite guard, the `train.report_to` loggers (tensorboard, mlflow, wandb)."""
    from .report.trackers import report_callbacks

    return [MetricsLogger(run), MarkComplete(), NonFiniteGuard(run, train.on_nonfinite),
            *report_callbacks(train.report_to, run.path)]


def save_output(run: RunDir, model: Any, tokenizer: Any, adapter: Any, base_path: str) -> Path:
    """The stage's artifact in `run/model`: a PEFT adapter folder (loadable with
    `PeftModel.from_pretrained`, recording its base) or, for `method: full`, a full model folder;
    the tokenizer as trained (chat template included) beside it."""
    from .adapters.artifacts import save_adapter

    final = run.path / "model"
    if not run.main:
        return final
    # a policy loaded from an adapter folder (tunesmith.adapters.chain) names its own base and, when it
    # continues that adapter, the adapter's own settings
    base_path = getattr(model, "tunesmith_base", base_path)
    adapter = getattr(model, "tunesmith_adapter", adapter)
    if adapter is None or adapter.method == "full":
        with atomic_dir(final) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        return final
    save_adapter(model, final, adapter, base=base_path)
    tokenizer.save_pretrained(final)
    return final


def finish_run(run: RunDir, step: int | None = None, push_to_hub: Any = None) -> dict:
    """Log peak memory, write report.md/report.html, log the run into the MLflow/W&B runs of
    config.yaml's `train.report_to` and end them, push when the recipe asks. Main process only.
    Returns {"peak_memory": ..., "report": path, "trackers": {name: run id}, "pushed": url}."""
    from .report import log_peak_memory, write_report
    from .report.trackers import configured_trackers, finish_trackers

    out: dict = {}
    out["peak_memory"] = log_peak_memory(run, step=step) if run.main else {}
    if not run.main:
        return out
    out["report"] = str(write_report(run.path).html)
    trackers = configured_trackers(run.path)  # config.yaml's train.report_to: mlflow, wandb
    if trackers:
        out["trackers"] = finish_trackers(run.path, trackers, step)
    if push_to_hub is not None:
        from .hub import push

        out["pushed"] = push(run.path, push_to_hub).url
    return out
