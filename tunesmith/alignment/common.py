"""What every alignment stage shares: the `model:` section, loading the policy (quantized
and wrapped as the `adapter:` block says), the run directory, callbacks, saving, and the end
of a stage (`resume_checkpoint` + `train_and_save`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from pydantic import Field
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..adapters import AdapterConfig, apply, load_base
from ..adapters.quantize import compute_dtype, is_quantized
from ..adapters.artifacts import save_adapter
from ..adapters.tokens import trainable_token_ids
from ..core.callbacks import training_callbacks
from ..core.checkpoints import last_checkpoint
from ..core.config import Section
from ..core.errors import UserError
from ..core.finish import finish_run
from ..core.modelio import check_model_folder
from ..core.result import StageResult
from ..core.rundir import RunDir, atomic_dir, default_run_dir
from ..core.train_config import RunSection, TrainSection
from ..core.training import train as run_training
from ..pretraining.tokenizer import CHATML_TEMPLATE


class ModelSection(Section):
    path: str = Field(description="local model folder (save_pretrained), e.g. runs/x/model")
    tokenizer: str | None = Field(None, description="tokenizer folder (default: the model folder)")
    chat_template: str | None = Field(
        None, description="Jinja chat template or 'chatml'; default: the tokenizer's own, else ChatML")
    trust_remote_code: bool = Field(False, description="allow custom model code (off: safer)")
    allow_pickle: bool = Field(False, description="allow pickle (.bin) weights, which can run code on load")


def load_tokenizer(model: ModelSection) -> PreTrainedTokenizerBase:
    path = Path(model.tokenizer or model.path)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a tokenizer: {str(e).splitlines()[0]}", file=path,
                        field="model.tokenizer") from None
    if model.chat_template == "chatml" or (model.chat_template is None and not tok.chat_template):
        tok.chat_template = CHATML_TEMPLATE
    elif model.chat_template:
        tok.chat_template = model.chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(model: ModelSection, adapter: AdapterConfig, num_labels: int | None = None,
                chat_tokens: bool = False):
    """(model wrapped with its adapter, tokenizer). The base is quantized when the adapter says so.
    `adapter.trainable_tokens` is resolved against the tokenizer; `chat_tokens` makes its `auto`
    mean the chat template's special tokens (the sft stage), otherwise none."""
    check_model_folder(model.path, allow_pickle=model.allow_pickle)
    tok = load_tokenizer(model)
    token_ids = trainable_token_ids(adapter, tok, auto=chat_tokens)  # bad tokens fail before the model loads
    base = load_base(model.path, adapter, num_labels=num_labels)
    if getattr(base.config, "pad_token_id", None) is None:
        base.config.pad_token_id = tok.pad_token_id
    return apply(base, adapter, token_ids=token_ids), tok


def open_run(run: RunSection, stage: str) -> RunDir:
    """The stage's run directory, checked but not yet made: the stage calls `run.start(cfg)` once
    its model and data have loaded, so bad input leaves an overwritten run's metrics and checkpoints
    in place (the data preparation writes its own files into the folder before that)."""
    return RunDir.create(run.dir or default_run_dir(stage), resume=run.resume, overwrite=run.overwrite,
                         make=False)


def callbacks(run: RunDir, tokens_per_step: int, train: TrainSection | None = None) -> list:
    """metrics.jsonl, checkpoint completion marker, non-finite guard (policy from `train`)."""
    return training_callbacks(run, train or TrainSection(), tokens_per_step)


def save_output(run: RunDir, model, tokenizer, adapter: AdapterConfig, base_path: str) -> Path:
    """The stage's artifact in `run/model`: a PEFT adapter folder (loadable with
    `PeftModel.from_pretrained`) or, for `method: full`, a full model folder; tokenizer included."""
    final = run.path / "model"
    if not run.main:
        return final
    if adapter.method == "full":
        with atomic_dir(final) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        return final
    save_adapter(model, final, adapter, base=base_path)
    tokenizer.save_pretrained(final)  # the tokenizer as trained (chat template included)
    return final


def keep_adapter_dtype(model, adapter: AdapterConfig) -> None:
    """Undo TRL's cast of a quantized model's trainable weights to bfloat16 (its QLoRA default):
    they go back to the adapter's compute dtype (float32 on CPU, where bf16 matmuls are slow or
    fail against float32 activations). Call after building a TRL trainer, before `train()`."""
    if not is_quantized(model):
        return
    dtype = compute_dtype(adapter)
    for p in model.parameters():
        if p.requires_grad and p.dtype != dtype:
            p.data = p.data.to(dtype)


def resume_checkpoint(run: RunDir, run_cfg: RunSection) -> Path | None:
    """With `run.resume`, the last complete checkpoint, metrics.jsonl cut back to its step (so no
    step is logged twice); otherwise None (train from the start)."""
    ckpt = last_checkpoint(run.checkpoints) if run_cfg.resume else None
    if ckpt is not None:
        run.truncate_metrics_after(int(ckpt.name.split("-")[-1]))
    return ckpt


def train_and_save(trainer, run: RunDir, cfg: Any, metrics: dict, resume: Path | None,
                   after: Callable[[Any], dict] | None = None) -> StageResult:
    """The end of a stage: train (crash-safe, from `resume`; a checkpoint already at max_steps is
    loaded, not trained further), add `train_seconds`/`train_loss`/`steps` and `after(trained
    model)` to `metrics`, save the adapter or model to `run/model`, write results.json
    (`{"metrics", "model_path"}`), then peak memory, the report and the optional push.
    `cfg` is the stage config: its `model.path`, `adapter` and `push_to_hub` are read."""
    t0 = time.perf_counter()
    out = run_training(trainer, resume)
    metrics.update(train_seconds=round(time.perf_counter() - t0, 2), train_loss=out.training_loss,
                   steps=trainer.state.global_step)
    if after is not None:
        metrics.update(after(trainer.model))
    path = save_output(run, trainer.model, trainer.processing_class, cfg.adapter, cfg.model.path)
    run.write_json("results.json", {"metrics": metrics, "model_path": str(path)})
    finish_run(run, trainer.state.global_step, cfg.push_to_hub)
    return StageResult(run.path, path, metrics)
