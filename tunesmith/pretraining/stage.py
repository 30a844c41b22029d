"""The pretraining stage: build (or load) the model and tokenizer, build the data, train with
the Hugging Face Trainer, save a standard model folder, print a sample.

    import tunesmith as ts
    result = ts.pretrain({"model": {"size": "nano"}, "train": {"max_steps": 50}})
    print(result.model_path, result.metrics["eval_loss"])
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, TrainingArguments, set_seed

from ..core.callbacks import console_progress, training_callbacks
from ..core.checkpoints import last_checkpoint
from ..core.config import coerce
from ..core.device import pick_dtype
from ..core.distributed import main_process_first
from ..core.errors import UserError
from ..core.finish import finish_run
from ..core.modelio import check_model_folder, load_causal_lm
from ..core.result import StageResult
from ..core.rundir import RunDir, atomic_dir, default_run_dir
from ..core.trainer_args import batch_layout, training_kwargs
from ..core.training import evaluate_before_training, train as run_training
from .config import PretrainConfig
from .curriculum import CurriculumSampler
from .data import build_data, tokenizer_texts
from .documents import corpus_specs
from .init import initialize
from .mtp import attach_heads, load_heads, save_heads
from .presets import build_model, count_parameters
from .tokenizer import load_tokenizer, train_tokenizer
from .trainer import PretrainTrainer


@dataclass
class PretrainResult(StageResult):
    sample: str = ""


def pretrain(config: PretrainConfig | dict | None = None, **sections) -> PretrainResult:
    """Train a causal LM from scratch (or continue one) as `config` says; see PretrainConfig."""
    cfg = coerce(PretrainConfig, config, **sections)
    _check(cfg)
    run = RunDir.create(cfg.run.dir or default_run_dir("pretrain"), resume=cfg.run.resume,
                        overwrite=cfg.run.overwrite, make=False)
    dtype = pick_dtype(cfg.train.dtype)
    set_seed(cfg.train.seed)
    with main_process_first():  # the others reuse the tokenizer it wrote
        tokenizer = _tokenizer(cfg, run)
        model = _model(cfg, tokenizer)
        reference = load_causal_lm(cfg.curriculum.reference_model) if cfg.curriculum.score == "perplexity" \
            and cfg.curriculum.enabled and cfg.curriculum.reference_model else None
        data = build_data(cfg, tokenizer, reference)
        # every input is valid: only now does anything get written
        run.make()
        if run.main and not (cfg.run.resume and (run.path / "tokenizer").is_dir()):  # overwrite: replaced
            with atomic_dir(run.path / "tokenizer") as tmp:
                tokenizer.save_pretrained(tmp)
    run.write_config(cfg)
    run.write_environment(seed=cfg.train.seed, dtype=dtype, parameters=count_parameters(model),
                          data=data.stats)

    trainer = _trainer(cfg, run, model, tokenizer, data, dtype)
    resume_from = last_checkpoint(run.checkpoints) if cfg.run.resume else None
    metrics: dict = {"parameters": count_parameters(model), "dtype": dtype, **data.stats}
    if resume_from is None and data.validation is not None:
        metrics["initial_eval_loss"] = evaluate_before_training(trainer)["eval_loss"]
    if resume_from is not None:
        run.truncate_metrics_after(int(Path(resume_from).name.split("-")[-1]))
    t0 = time.perf_counter()
    out = run_training(trainer, resume_from)
    metrics["train_seconds"] = round(time.perf_counter() - t0, 2)
    metrics["train_loss"] = out.training_loss
    metrics["steps"] = trainer.state.global_step
    if data.validation is not None:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
        metrics["perplexity"] = math.exp(min(metrics["eval_loss"], 50))
    model_path = _save(run, model, tokenizer)
    sample = generate_sample(model, tokenizer, cfg.run.sample_prompt, cfg.run.sample_tokens, cfg.train.seed)
    run.write_json("results.json", {"metrics": metrics, "model_path": str(model_path), "sample": sample})
    finish_run(run, trainer.state.global_step, cfg.push_to_hub)
    return PretrainResult(run.path, model_path, metrics, sample)


def _check(cfg: PretrainConfig) -> None:
    batch_layout(cfg.train)  # the global batch splits over micro-batches and processes
    if cfg.model.from_pretrained:
        check_model_folder(cfg.model.from_pretrained, allow_pickle=cfg.model.allow_pickle)
    if cfg.curriculum.enabled and cfg.curriculum.score == "perplexity" and not cfg.curriculum.reference_model:
        raise UserError("perplexity scoring needs a reference model", field="curriculum.reference_model",
                        fix="name a local causal-LM folder that shares the tokenizer")


def _tokenizer(cfg: PretrainConfig, run: RunDir):
    saved = run.path / "tokenizer"
    if (cfg.run.resume or not run.main) and saved.is_dir():
        return load_tokenizer(saved)
    if cfg.tokenizer.path:
        tok = load_tokenizer(cfg.tokenizer.path)
    elif cfg.model.from_pretrained:
        tok = load_tokenizer(cfg.model.from_pretrained)
    else:
        texts = list(tokenizer_texts(cfg))
        if not texts:
            raise UserError("the training corpus is empty (no non-blank documents)", field="data.train",
                            file=", ".join(corpus_specs(cfg.data.train)))
        tok = train_tokenizer(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
    return tok


def _model(cfg: PretrainConfig, tokenizer):
    m = cfg.model
    if m.from_pretrained:
        model = load_causal_lm(m.from_pretrained, trust_remote_code=m.trust_remote_code,
                               allow_pickle=m.allow_pickle)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model only "
                            f"{model.get_input_embeddings().num_embeddings} embeddings",
                            file=m.from_pretrained, field="tokenizer.path")
    else:
        model = build_model(m.family, m.size, layers=m.layers, hidden=m.hidden, heads=m.heads,
                            kv_heads=m.kv_heads, intermediate=m.intermediate, context=m.context,
                            vocab=m.vocab or len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                            initializer_range=m.init_std)
        if m.vocab and m.vocab < len(tokenizer):
            raise UserError(f"model.vocab {m.vocab} is smaller than the tokenizer ({len(tokenizer)} tokens)",
                            field="model.vocab")
        initialize(model, m.family, m.init, m.init_std, seed=cfg.train.seed)
    context = model.config.max_position_embeddings
    if cfg.data.block_size > context:
        raise UserError(f"data.block_size {cfg.data.block_size} exceeds the model's context {context}",
                        field="data.block_size", fix=f"set data.block_size <= {context} or model.context")
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    if cfg.objective.type == "multi_token":
        attach_heads(model, cfg.objective.n_heads)
        if m.from_pretrained:
            load_heads(model, m.from_pretrained, cfg.objective.n_heads)
    return model


def _trainer(cfg: PretrainConfig, run: RunDir, model, tokenizer, data, dtype: str) -> PretrainTrainer:
    t = cfg.train
    args = TrainingArguments(**training_kwargs(t, run, dtype, data.validation is not None),
                             prediction_loss_only=True, remove_unused_columns=False)
    sampler = None
    if cfg.curriculum.enabled:
        c = cfg.curriculum
        sampler = CurriculumSampler(len(data.train), t.max_steps * t.batch_size, c.start_fraction,
                                    c.full_at, c.pacing, t.seed)
    trainer = PretrainTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                              processing_class=tokenizer, curriculum_sampler=sampler,
                              callbacks=training_callbacks(run, t, t.batch_size * cfg.data.block_size))
    console_progress(trainer)  # a bar on stderr; metrics go to metrics.jsonl
    return trainer


def _save(run: RunDir, model, tokenizer) -> Path:
    """The final model folder: config, safetensors, tokenizer, generation config (and the
    extra prediction heads beside them). Written to a temp folder, then renamed."""
    final = run.path / "model"
    if not run.main:
        return final
    heads = model._modules.pop("mtp_heads", None)
    try:
        with atomic_dir(final) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if heads is not None:
                model.mtp_heads = heads
                save_heads(model, tmp)
    finally:
        if heads is not None:
            model.mtp_heads = heads
    return final


@torch.no_grad()
def generate_sample(model, tokenizer, prompt: str, max_new_tokens: int, seed: int) -> str:
    if max_new_tokens <= 0:
        return ""
    model.eval()
    torch.manual_seed(seed)
    ids = tokenizer(prompt, return_tensors="pt").to(model.device)
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=True, top_k=40, temperature=0.8)
    return tokenizer.decode(out[0], skip_special_tokens=True)
