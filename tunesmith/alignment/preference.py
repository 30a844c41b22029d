"""Preference alignment: DPO (every TRL loss type), KTO (unpaired data), ORPO and SimPO (reference-free).

Each stage is a config (model, adapter, data, tasks, its own block, train, run) and one function
that reads top to bottom: open the run, load the policy, prepare the data, score the held-out
pairs, build TRL's trainer, train, score again, save.

What tunesmith adds over the TRL trainers:
- one recipe shape for all four methods, data read by `tunesmith.data` (any preference format,
  every row validated with file:line errors);
- the reference model picked for memory: when training an adapter, the base with the adapter
  disabled IS the reference (no second copy); for full fine-tuning, reference log-probs are
  precomputed once and the reference model is freed;
- a reference-free proof on held-out pairs before and after training: pair accuracy (policy
  log-prob of chosen > rejected) and mean log-prob margin, plus TRL's implicit-reward metrics;
- paired batches (DPO, ORPO, SimPO) drawn grouped by length: TRL pads every chosen and rejected
  sequence of a batch to the longest of them, so pairs of similar length waste less compute.

    import tunesmith as ts
    r = ts.dpo(model={"path": "runs/sft/merged"}, tasks={"names": ["add"]}, dpo={"loss_type": "ipo"})
    print(r.metrics["before/pair_accuracy"], r.metrics["after/pair_accuracy"])
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import trl
from pydantic import Field

from ..adapters import AdapterConfig
from ..adapters.chain import is_adapter_folder, model_folder, run_output
from ..compat import DPO_LOSS_TYPES, plain_lm_head, trl_experimental
from ..core.config import Section, coerce
from ..core.distributed import main_process_first, world_size
from ..core.errors import UserError
from ..core.result import StageResult
from ..core.rundir import RunDir, atomic_dir, is_main_process
from ..core.train_config import RunSection, TrainSection
from ..core.trainer_args import batch_layout, training_kwargs
from ..data import DataPrepConfig
from ..hub.config import PushConfig
from ..lifecycle import Training, run_stage
from .batching import grouped_order, text_length
from .common import ModelSection, load_policy
from .stage_data import TasksSection, stage_data, task_scores
from .pairs import heldout_pairs, pair_scores

DPOLoss = Literal[DPO_LOSS_TYPES]  # TRL's names (compat.DPO_LOSS_TYPES)


class DPOSection(Section):
    loss_type: DPOLoss | list[DPOLoss] = Field("sigmoid", description=(
        "DPO loss: sigmoid (DPO) | ipo | hinge | robust (with label_smoothing) | exo_pair | nca_pair | bco_pair | "
        "sppo_hard | aot | aot_unpaired | apo_zero | apo_down | discopop | sft | sigmoid_norm; a list combines losses"))
    loss_weights: list[float] | None = Field(None, description="weights when loss_type is a list (MPO-style mixes)")
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference model")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="robust/cDPO: probability a preference label is flipped")
    reference: Literal["auto", "adapter_disabled", "precomputed", "copy"] = Field("auto", description=(
        "reference model: auto (adapter_disabled when training an adapter, else precomputed) | adapter_disabled "
        "(the base without the adapter, no extra memory) | precomputed (reference log-probs computed once before "
        "training) | copy (a frozen copy in memory)"))
    max_length: int = Field(512, ge=8, description="tokens per prompt+completion (longer ones are truncated)")


class KTOSection(Section):
    loss_type: Literal["kto", "apo_zero_unpaired"] = Field("kto", description="kto | apo_zero_unpaired")
    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference model")
    desirable_weight: float = Field(1.0, gt=0, description="weight of desirable (label true) rows")
    undesirable_weight: float = Field(1.0, gt=0, description="weight of undesirable (label false) rows")
    reference: Literal["auto", "adapter_disabled", "precomputed", "copy"] = Field(
        "auto", description="reference model, as for dpo.reference")
    max_length: int = Field(512, ge=8, description="tokens per prompt+completion")


class ORPOSection(Section):
    beta: float = Field(0.1, gt=0, description="lambda: weight of the odds-ratio term next to the SFT loss")
    max_length: int = Field(512, ge=8, description="tokens per prompt+completion")


class SimPOSection(Section):
    beta: float = Field(2.0, gt=0, description="reward scale of the length-normalized log-probs")
    gamma: float = Field(0.5, ge=0, description="target reward margin (simpo_gamma)")
    cpo_alpha: float = Field(0.0, ge=0, description="weight of an added SFT (behaviour cloning) term; 0 = pure SimPO")
    max_length: int = Field(512, ge=8, description="tokens per prompt+completion")


def _train_section() -> TrainSection:
    return TrainSection(lr=5e-4, warmup_steps=10, batch_size=16, max_steps=200)


class _PreferenceConfig(Section):
    model: ModelSection = Field(description="the policy to align (usually an SFT model)")
    adapter: AdapterConfig = Field(default_factory=AdapterConfig, description="adapter (LoRA by default)")
    data: DataPrepConfig = Field(default_factory=DataPrepConfig, description="preference data")
    tasks: TasksSection = Field(default_factory=TasksSection, description="embedded tasks: pairs and held-out scoring")
    train: TrainSection = Field(default_factory=_train_section, description="optimisation")
    run: RunSection = Field(default_factory=RunSection, description="run folder")
    push_to_hub: PushConfig | None = Field(None, description="push the result to the Hub at the end: {repo: user/name, ...}")


class DPOConfig(_PreferenceConfig):
    """The `tunesmith dpo` recipe."""
    dpo: DPOSection = Field(default_factory=DPOSection, description="DPO loss and reference model")


class KTOConfig(_PreferenceConfig):
    """The `tunesmith kto` recipe (unpaired prompt/completion/label rows, or pairs split in two)."""
    kto: KTOSection = Field(default_factory=KTOSection, description="KTO loss and reference model")


class ORPOConfig(_PreferenceConfig):
    """The `tunesmith orpo` recipe (reference-free)."""
    orpo: ORPOSection = Field(default_factory=ORPOSection, description="ORPO loss")


class SimPOConfig(_PreferenceConfig):
    """The `tunesmith simpo` recipe (TRL's CPO trainer with loss_type simpo; reference-free)."""
    simpo: SimPOSection = Field(default_factory=SimPOSection, description="SimPO loss")


def _reference(choice: str, cfg: _PreferenceConfig) -> str:
    """`auto`: precomputed log-probs for full fine-tuning, the adapter-disabled base for a new adapter,
    and a frozen copy of the starting model when continuing an adapter (`model.adapter: continue`:
    disabling that adapter would give its base, not the model being aligned)."""
    if choice != "auto":
        return choice
    if cfg.model.adapter == "continue" and is_adapter_folder(run_output(cfg.model.path)):
        return "copy"
    return "precomputed" if cfg.adapter.method == "full" else "adapter_disabled"


def _precomputes(cfg: _PreferenceConfig, stage: str) -> bool:
    """Whether the stage precomputes reference log-probs (dpo/kto with the reference `precomputed`)."""
    block = {"dpo": getattr(cfg, "dpo", None), "kto": getattr(cfg, "kto", None)}.get(stage)
    return block is not None and _reference(block.reference, cfg) == "precomputed"


def _shared(run: RunDir, name: str, dataset: Any) -> Any:
    """`dataset` saved once by the main process to `run/data_cache/<name>` and memory-mapped from there
    by every process. TRL's precomputed reference log-probs are written by the main process beside the
    dataset's Arrow files and then opened by every process, but prepared data lives in a per-process
    scratch folder: without one shared folder the other processes find no file."""
    from datasets import load_from_disk

    if dataset is None:
        return None
    folder = run.path / "data_cache" / name
    with main_process_first():
        if run.main:
            with atomic_dir(folder) as tmp:
                dataset.save_to_disk(str(tmp))
        return load_from_disk(str(folder))


# the per-token fields TRL's DPO and KTO trainers ask their fused LM head for (trl 1.16 `add_fused_lm_head`)
TRL_HEAD_OUTPUTS = {"dpo": ("log_probs", "entropy", "mean_logits", "is_top1"), "kto": ("log_probs", "entropy", "mean_logits")}
GROUPED_STAGES = ("dpo", "orpo", "simpo")  # paired batches: chosen and rejected padded together (reward too;
# KTO's rows are put in length-grouped order instead: `batching.grouped_order`)


def with_lengths(dataset: Any) -> Any:
    """A tokenized preference dataset plus the `length` column the trainer's length-grouped
    sampler reads: the prompt's tokens plus the longer completion's (sequences that already hold
    the prompt count it twice: the order, not the number, matters)."""
    ids = [c for c in dataset.column_names if c.endswith("_ids") and "attention" not in c]
    prompt = [c for c in ids if c.startswith("prompt")]
    rest = [c for c in ids if c not in prompt and not c.endswith("labels")]
    columns = {c: dataset[c] for c in prompt + rest}
    lengths = [sum(len(columns[c][i]) for c in prompt) + max((len(columns[c][i]) for c in rest), default=0)
               for i in range(dataset.num_rows)]
    return dataset.remove_columns([c for c in ("length",) if c in dataset.column_names]).add_column("length", lengths)


# what a trainer's arguments say for pairs drawn grouped by length (`group_by_length` adds the column)
GROUPED_ARGS = {"train_sampling_strategy": "group_by_length", "length_column_name": "length"}


def group_by_length(trainer: Any) -> None:
    """Give a paired trainer's tokenized datasets the `length` column its length-grouped samplers
    (training and, in transformers, evaluation too) read (its arguments carry GROUPED_ARGS)."""
    trainer.train_dataset = with_lengths(trainer.train_dataset)
    if isinstance(trainer.eval_dataset, dict):
        trainer.eval_dataset = {k: with_lengths(v) for k, v in trainer.eval_dataset.items()}
    elif trainer.eval_dataset is not None:
        trainer.eval_dataset = with_lengths(trainer.eval_dataset)


def _trainer(cfg: _PreferenceConfig, stage: str, model: Any, tok: Any, run: Any, dtype: str, train_ds: Any,
             eval_ds: Any) -> Any:
    """TRL's trainer for `stage`, its config built from the shared training kwargs + the stage block."""
    base = dict(training_kwargs(cfg.train, run, dtype, eval_ds is not None), remove_unused_columns=False)
    if stage in GROUPED_STAGES:  # the `length` column is added once TRL has tokenized (`with_lengths`)
        base.update(GROUPED_ARGS)
    common = dict(model=model, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok)
    if stage == "dpo":
        d = cfg.dpo
        loss = d.loss_type if isinstance(d.loss_type, list) else [d.loss_type]
        if {"exo_pair", "robust"} & set(loss) and d.label_smoothing == 0:
            raise UserError(f"loss_type {'/'.join(sorted({'exo_pair', 'robust'} & set(loss)))} needs label "
                            "smoothing", field="dpo.label_smoothing",
                            fix="set dpo.label_smoothing, e.g. 0.001 for exo_pair, 0.1 for robust")
        args = trl.DPOConfig(**base, loss_type=loss, loss_weights=d.loss_weights, beta=d.beta,
                             label_smoothing=d.label_smoothing, max_length=d.max_length,
                             precompute_ref_log_probs=_reference(d.reference, cfg) == "precomputed")
        return trl.DPOTrainer(args=args, ref_model=_ref_copy(d.reference, cfg), **common)
    if stage == "kto":
        k = cfg.kto
        args = trl.KTOConfig(**base, loss_type=k.loss_type, beta=k.beta, desirable_weight=k.desirable_weight,
                             undesirable_weight=k.undesirable_weight, max_length=k.max_length,
                             precompute_ref_log_probs=_reference(k.reference, cfg) == "precomputed")
        return trl.KTOTrainer(args=args, ref_model=_ref_copy(k.reference, cfg), **common)
    if stage == "orpo":
        TrlORPOConfig, ORPOTrainer = trl_experimental("orpo")
        args = TrlORPOConfig(**base, beta=cfg.orpo.beta, max_length=cfg.orpo.max_length)
        return ORPOTrainer(args=args, **common)
    CPOConfig, CPOTrainer = trl_experimental("cpo")
    s = cfg.simpo
    args = CPOConfig(**base, loss_type="simpo", beta=s.beta, simpo_gamma=s.gamma, cpo_alpha=s.cpo_alpha,
                     max_length=s.max_length)
    return CPOTrainer(args=args, **common)


def _ref_copy(choice: str, cfg: _PreferenceConfig) -> Any:
    """A frozen reference model only when asked for (`reference: copy`); otherwise None lets TRL use the
    adapter-disabled base or the precomputed log-probs."""
    if _reference(choice, cfg) != "copy":
        return None
    from ..core.modelio import load_causal_lm

    ref = load_causal_lm(model_folder(cfg.model.path), trust_remote_code=cfg.model.trust_remote_code,
                         allow_pickle=cfg.model.allow_pickle)
    ref.requires_grad_(False)
    return ref.eval()


def run_preference(cfg: _PreferenceConfig, stage: str) -> StageResult:
    """The body every preference stage shares."""

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        model, tok = load_policy(cfg.model, cfg.adapter,
                                  gradient_checkpointing=cfg.train.gradient_checkpointing is True)
        data = stage_data(cfg.data, cfg.tasks, run, tok, "kto" if stage == "kto" else "preference")
        return SimpleNamespace(model=model, tok=tok, data=data, pairs=heldout_pairs(cfg.tasks, data),
                               eval=_eval_split(stage, cfg, data),
                               environment={"train_rows": data["train"].num_rows})

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        before = {**pair_scores(x.model, x.tok, x.pairs, "before/"), **task_scores(x.model, x.tok, cfg.tasks, "before/")}
        train_ds, eval_ds = x.data["train"], x.eval
        if stage == "kto":  # KTO reads rows in order (its KL pairs are batch neighbours): grouped by length here
            per_device, _ = batch_layout(cfg.train)
            # unpaired rows (prompt, completion, label), or pairs TRL splits in two (prompt, chosen, rejected)
            answers = [train_ds[k] for k in ("completion", "chosen", "rejected") if k in train_ds.column_names]
            prompts = train_ds["prompt"] if "prompt" in train_ds.column_names else [None] * train_ds.num_rows
            lengths = [text_length(p) + max((text_length(a[i]) for a in answers), default=0)
                       for i, p in enumerate(prompts)]
            train_ds = train_ds.select(grouped_order(lengths, per_device, cfg.train.seed))
        if _precomputes(cfg, stage) and world_size() > 1:
            train_ds, eval_ds = (_shared(run, name, ds) for name, ds in (("train", train_ds), ("eval", eval_ds)))
        trainer = _trainer(cfg, stage, x.model, x.tok, run, dtype, train_ds, eval_ds)
        if stage in ("dpo", "kto"):  # the trainers on TRL's fused LM head (ORPO and CPO compute logits)
            plain_lm_head(trainer.model, outputs=TRL_HEAD_OUTPUTS[stage] + (
                ("log_sum_sq_probs",) if getattr(trainer, "use_weighting", False) else ()))
            if getattr(trainer, "ref_model", None) is not None:
                plain_lm_head(trainer.ref_model)
        if stage in GROUPED_STAGES:
            group_by_length(trainer)

        def after(trained: Any) -> dict[str, Any]:
            scores = trainer.evaluate() if eval_ds is not None else {}
            return {**{k: v for k, v in scores.items() if isinstance(v, (int, float))},
                    **pair_scores(trained, x.tok, x.pairs, "after/"), **task_scores(trained, x.tok, cfg.tasks, "after/")}
        return Training(trainer, before, after)

    result = run_stage(stage, cfg, load, build)
    if result.run_dir.exists() and is_main_process():
        shutil.rmtree(result.run_dir / "data_cache", ignore_errors=True)  # the copies _shared made
    return result


def _eval_split(stage: str, cfg: _PreferenceConfig, data: Any) -> Any:
    """Held-out task pairs (tasks named) or the data's validation split, for TRL's implicit-reward metrics."""
    from datasets import Dataset

    if cfg.tasks.names:
        from .toy_tasks import kto_rows, preference_rows

        make = kto_rows if stage == "kto" else preference_rows
        rows = make(cfg.tasks.names, cfg.tasks.eval_rows, seed=cfg.tasks.seed + 1, split="heldout")
        return Dataset.from_list([{k: v for k, v in r.items() if k != "task"} for r in rows])
    return data["validation"] if "validation" in data else None


def dpo(config: DPOConfig | dict | str | Path | None = None, **sections: Any) -> StageResult:
    """Direct preference optimization (see DPOConfig); metrics include before/after held-out pair accuracy.

    Example:
        r = dpo(model={"path": "sft-model"}, tasks={"names": ["add"]}, dpo={"loss_type": "ipo"})
    """
    return run_preference(coerce(DPOConfig, config, **sections), "dpo")


def kto(config: KTOConfig | dict | str | Path | None = None, **sections: Any) -> StageResult:
    """KTO on unpaired rows (prompt, completion, label); pairs are split into two rows.

    Example:
        r = kto(model={"path": "sft-model"}, data={"inputs": [{"path": "kto.jsonl"}]})
    """
    return run_preference(coerce(KTOConfig, config, **sections), "kto")


def orpo(config: ORPOConfig | dict | str | Path | None = None, **sections: Any) -> StageResult:
    """ORPO (odds-ratio preference optimization, no reference model).

    Example:
        r = orpo(model={"path": "base"}, data={"inputs": [{"path": "pairs.jsonl"}]})
    """
    return run_preference(coerce(ORPOConfig, config, **sections), "orpo")


def simpo(config: SimPOConfig | dict | str | Path | None = None, **sections: Any) -> StageResult:
    """SimPO (length-normalized, reference-free; TRL's CPO trainer with loss_type simpo).

    Example:
        r = simpo(model={"path": "sft-model"}, tasks={"names": ["upper"]}, simpo={"gamma": 1.0})
    """
    return run_preference(coerce(SimPOConfig, config, **sections), "simpo")
