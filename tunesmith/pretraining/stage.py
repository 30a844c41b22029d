"""The pretraining stage: build (or load) the model and tokenizer, build the data, train with
the Hugging Face Trainer, save a standard model folder, print a sample.

    import tunesmith as ts
    result = ts.pretrain({"model": {"size": "nano"}, "train": {"max_steps": 50}})
    print(result.model_path, result.metrics["eval_loss"])
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import GenerationConfig, TrainerCallback, TrainingArguments

from ..core.config import coerce
from ..core.errors import UserError
from ..core.modelio import check_model_folder, load_causal_lm
from ..core.result import StageResult
from ..core.rundir import RunDir, atomic_dir
from ..core.trainer_args import batch_layout, training_kwargs
from ..core.training import evaluate_before_training
from ..lifecycle import Training, run_stage
from .config import PretrainConfig
from .curriculum import CurriculumSampler
from .data import build_data, tokenizer_texts
from .documents import corpus_specs
from .init import initialize
from .mtp import attach_heads, load_heads, save_heads
from .packing import stack_examples
from .presets import build_model, count_parameters
from .tokenizer import load_tokenizer, train_tokenizer
from .trainer import PretrainTrainer


@dataclass
class PretrainResult(StageResult):
    sample: str = ""


def pretrain(config: PretrainConfig | dict | None = None, **sections) -> PretrainResult:
    """Train a causal LM from scratch (or continue one) as `config` says; see PretrainConfig."""
    cfg = coerce(PretrainConfig, config, **sections)
    if cfg.model.from_pretrained:  # a run directory or an adapter folder: the model it stands for
        from ..adapters.chain import model_folder

        path = str(model_folder(cfg.model.from_pretrained, "model.from_pretrained"))
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"from_pretrained": path})})
    _check(cfg)

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        tokenizer = _tokenizer(cfg, run)
        model = _model(cfg, tokenizer)
        reference = load_causal_lm(cfg.curriculum.reference_model) if cfg.curriculum.score == "perplexity" \
            and cfg.curriculum.enabled and cfg.curriculum.reference_model else None
        data = build_data(cfg, tokenizer, reference, vocab_limit=model.get_input_embeddings().num_embeddings)
        # every input is valid: only now does anything get written (the other processes load this tokenizer)
        run.make()
        if run.main and not (cfg.run.resume and (run.path / "tokenizer").is_dir()):  # overwrite: replaced
            with atomic_dir(run.path / "tokenizer") as tmp:
                tokenizer.save_pretrained(tmp)
        return SimpleNamespace(tokenizer=tokenizer, model=model, data=data, conventions=special_tokens(model),
                               environment={"parameters": count_parameters(model), "data": data.stats,
                                            "document_boundaries": data.boundaries.record()})

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        trainer = _trainer(cfg, run, x.model, x.tokenizer, x.data, dtype)
        trainer.add_callback(KeepSpecialTokens(x.model, x.conventions))  # checkpoints keep them too

        def before() -> dict:
            out = {"parameters": x.environment["parameters"], "dtype": dtype, **x.data.stats}
            if not resuming and x.data.validation is not None:
                out["initial_eval_loss"] = evaluate_before_training(trainer)["eval_loss"]
            return out

        def after(model) -> dict:
            if x.data.validation is None:
                return {}
            loss = trainer.evaluate()["eval_loss"]
            return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50))}

        def sample(model) -> dict:
            return {"sample": generate_sample(model, x.tokenizer, cfg.run.sample_prompt, cfg.run.sample_tokens,
                                              cfg.train.seed)}
        return Training(trainer, before, after,
                        save=lambda run_, model: _save(run_, model, x.tokenizer, x.conventions), finish=sample)

    return run_stage("pretrain", cfg, load, build, result_cls=PretrainResult)


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
        check_vocabulary(tokenizer, model.get_input_embeddings().num_embeddings, m.from_pretrained)
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
    model.generation_config = generation_config(model, tokenizer, m.from_pretrained,
                                                own_tokenizer=not cfg.tokenizer.path)
    if cfg.objective.type == "multi_token":
        attach_heads(model, cfg.objective.n_heads)
        if m.from_pretrained:
            load_heads(model, m.from_pretrained, cfg.objective.n_heads)
    return model


def check_vocabulary(tokenizer, embeddings: int, folder) -> None:
    """A tokenizer larger than the model's embedding matrix is accepted only when every id beyond
    it is an added special token text never produces (Gemma 3's `<image_soft_token>`, id 262144 of
    a 262144-row text model); build_data then refuses a document that would produce one."""
    if len(tokenizer) <= embeddings:
        return
    beyond = sorted(i for i in tokenizer.get_vocab().values() if i >= embeddings)
    added = getattr(tokenizer, "added_tokens_decoder", {})
    real = [i for i in beyond if i not in added or not getattr(added[i], "special", False)]
    if real:
        named = ", ".join(f"{tokenizer.convert_ids_to_tokens(i)!r} (id {i})" for i in real[:3])
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model only {embeddings} embeddings: "
                        f"{len(real)} of them are not special tokens ({named}{', ...' if len(real) > 3 else ''})",
                        file=folder, field="tokenizer.path",
                        fix="use the model's own tokenizer, or resize the model's embeddings first")


def generation_config(model, tokenizer, source: str | None, own_tokenizer: bool = True) -> GenerationConfig:
    """The generation settings the saved model gets. A new model: the tokenizer's BOS/EOS/pad. A
    continued one keeps its family's conventions: the source folder's generation_config.json as it
    is (Llama 3.1's three EOS ids and sampling settings, Qwen's and Gemma's second EOS), else what
    transformers derived from its config.json, with only missing BOS/EOS/pad filled in from the
    tokenizer. Only a tokenizer given explicitly (tokenizer.path) whose EOS is not among the
    source's EOS ids replaces the special-token ids (the sampling settings stay)."""
    def ids(value) -> list:
        return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]

    if not source:
        return GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id)
    if (Path(source) / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(source)
        fill = False
    else:
        gen = copy.deepcopy(model.generation_config) if model.generation_config is not None \
            else GenerationConfig.from_model_config(model.config)
        fill = True
    if not own_tokenizer and tokenizer.eos_token_id not in ids(gen.eos_token_id):
        gen.bos_token_id, gen.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        gen.pad_token_id = tokenizer.pad_token_id
    elif fill:
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(gen, name) is None:
                setattr(gen, name, getattr(tokenizer, name))
    return gen


def _trainer(cfg: PretrainConfig, run: RunDir, model, tokenizer, data, dtype: str) -> PretrainTrainer:
    t = cfg.train
    args = TrainingArguments(**training_kwargs(t, run, dtype, data.validation is not None),
                             prediction_loss_only=True, remove_unused_columns=False)
    sampler = None
    if cfg.curriculum.enabled:
        c = cfg.curriculum
        sampler = CurriculumSampler(len(data.train), t.max_steps * t.batch_size, c.start_fraction,
                                    c.full_at, c.pacing, t.seed)
    return PretrainTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                           processing_class=tokenizer, data_collator=stack_examples, curriculum_sampler=sampler)


SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def special_tokens(model) -> tuple[GenerationConfig | None, dict]:
    """The model's generation config and its config's special-token ids as this stage chose them.
    transformers' Trainer.train() "aligns" both with the tokenizer (a Llama 3.1 gets pad_token_id
    <|eot_id|>, Qwen3's config.json a pad id it did not have); `restore_special_tokens` puts them
    back when training begins (KeepSpecialTokens) and before the model is saved."""
    text = model.config.get_text_config()
    return copy.deepcopy(model.generation_config), {k: copy.deepcopy(getattr(text, k, None)) for k in SPECIAL_IDS}


def restore_special_tokens(model, kept: tuple[GenerationConfig | None, dict]) -> None:
    generation, ids = kept
    if generation is not None:
        model.generation_config = copy.deepcopy(generation)
    text = model.config.get_text_config()
    for name, value in ids.items():
        setattr(text, name, value)


class KeepSpecialTokens(TrainerCallback):
    """Undo Trainer.train()'s alignment of the special-token ids as training begins."""

    def __init__(self, model, kept: tuple[GenerationConfig | None, dict]):
        self.model, self.kept = model, kept

    def on_train_begin(self, args, state, control, **kwargs):
        restore_special_tokens(self.model, self.kept)


def _save(run: RunDir, model, tokenizer, conventions: tuple | None = None) -> Path:
    """The final model folder: config, safetensors, tokenizer, generation config (and the
    extra prediction heads beside them). Written to a temp folder, then renamed."""
    final = run.path / "model"
    if conventions is not None:
        restore_special_tokens(model, conventions)
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
