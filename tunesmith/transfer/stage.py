"""Task fine-tuning (transfer learning): classification or regression with an adapter.

A sequence-classification head goes on the base (encoder or decoder), the adapter block
is applied (the head stays fully trainable), and transformers' `Trainer` trains it by epochs
through the stage lifecycle (`tunesmith.lifecycle`): config.yaml, environment.json,
metrics.jsonl, checkpoints and `run.resume`, results.json, the adapter folder (`adapter/`,
loadable with stock PEFT), the report and the optional Hub push. (The GLUE protocol of
`tunesmith eval --train` has its own scoring loop, `tunesmith.eval.finetune`.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np
from datasets import Dataset
from pydantic import Field
from transformers import (DataCollatorWithPadding, Trainer, TrainingArguments)

from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.modelio import load_tokenizer
from ..core.result import StageResult
from ..core.rundir import RunDir
from ..core.train_config import EpochTrainSection, RunSection
from ..core.trainer_args import training_kwargs
from ..hub.config import PushConfig
from ..lifecycle import Training, run_stage
from ..adapters.apply import apply, trainable_summary
from ..adapters.artifacts import save_adapter
from ..adapters.chain import model_folder
from ..adapters.config import AdapterConfig
from ..adapters.optim import build_optimizer
from ..adapters.quantize import load_base
from ..adapters.tokens import trainable_token_ids
from .data import Columns, check_columns, check_rows, encode_labels, label_names, read_table


class DataSection(Section):
    train: str | None = Field(None, description="training file (.csv, .tsv or .jsonl)")
    eval: str | None = Field(None, description="evaluation file (same columns); null for none")
    text: str = Field("text", description="column holding the text")
    text_pair: str | None = Field(None, description="column holding the second text of a pair")
    label: str = Field("label", description="column holding the label")
    task: Literal["classification", "regression"] = Field(
        "classification", description="classification (labels are classes) or regression (a number)")
    max_length: int = Field(128, ge=8, description="truncate inputs to this many tokens")


class FinetuneConfig(Section):
    model: str | None = Field(None, description="base model folder (save_pretrained layout)")
    tokenizer: str | None = Field(None, description="tokenizer folder; null means the model folder")
    data: DataSection = Field(default_factory=DataSection)
    adapter: AdapterConfig = Field(default_factory=lambda: AdapterConfig(task="seq_cls"),
                                   description="the adapter block (task is always seq_cls here)")
    train: EpochTrainSection = Field(default_factory=lambda: EpochTrainSection(
        lr=2e-4, schedule="linear", weight_decay=0.0, dtype="fp32", seed=0, save_steps=500))
    run: RunSection = Field(default_factory=lambda: RunSection(dir="runs/finetune"))
    push_to_hub: PushConfig | None = Field(None, description="push the result to the Hub at the end: {repo: user/name, ...}")


@dataclass
class FinetuneResult(StageResult):
    labels: list | None = None
    trainable: dict = field(default_factory=dict)

    @property
    def adapter_dir(self) -> Path:
        return self.model_path


def _metrics(regression: bool):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    def compute(pred) -> dict:
        logits, labels = pred.predictions, pred.label_ids
        if regression:
            p = np.asarray(logits).reshape(-1)
            return {"pearson": float(pearsonr(p, labels)[0]), "spearman": float(spearmanr(p, labels)[0]),
                    "mse": float(np.mean((p - labels) ** 2))}
        p = np.argmax(logits, axis=-1)
        return {"accuracy": float(accuracy_score(labels, p)),
                "f1_macro": float(f1_score(labels, p, average="macro")),
                "mcc": float(matthews_corrcoef(labels, p))}
    return compute


def _load_split(path: str | None, given: Dataset | None, cols: Columns, regression: bool,
                name: str) -> Dataset | None:
    if given is None and path is None:
        return None
    data = given if given is not None else read_table(path)
    source = path or f"{name} dataset"
    check_columns(data, cols, source)
    check_rows(data, cols, source, regression)
    return data


def _tokenize(data: Dataset, tokenizer, cols: Columns, max_length: int) -> Dataset:
    def enc(batch):
        pair = batch[cols.text_pair] if cols.text_pair else None
        return tokenizer(batch[cols.text], pair, truncation=True, max_length=max_length)
    return data.map(enc, batched=True, remove_columns=data.column_names)


def finetune(config: FinetuneConfig | dict | None = None, *, train_dataset: Dataset | None = None,
             eval_dataset: Dataset | None = None) -> FinetuneResult:
    """Fine-tune `config.model` on labelled text with the adapter block; see the module doc.

    finetune({"model": "runs/nano/model", "data": {"train": "sst2/train.tsv",
              "text": "sentence"}, "adapter": {"method": "lora", "rank": 8}})
    """
    cfg = coerce(FinetuneConfig, config)
    if cfg.model is None:
        raise UserError("no base model given", field="model", fix="set model: PATH")
    adapter = cfg.adapter.model_copy(update={"task": "seq_cls"})
    # a run directory or an adapter folder: the model it stands for (an adapter merged into its base)
    cfg = cfg.model_copy(update={"adapter": adapter, "model": str(model_folder(cfg.model, "model"))})
    regression = cfg.data.task == "regression"
    cols = Columns(cfg.data.text, cfg.data.text_pair, cfg.data.label)

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        train = _load_split(cfg.data.train, train_dataset, cols, regression, "train")
        if train is None:
            raise UserError("no training data", field="data.train", fix="set data.train: FILE")
        evals = _load_split(cfg.data.eval, eval_dataset, cols, regression, "eval")
        labels = None if regression else label_names(train, cols)
        if labels is not None and len(labels) < 2:
            raise UserError(f"the training data has a single label ({labels})", field="data.label",
                            file=cfg.data.train, fix="classification needs at least two classes")
        tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, field="tokenizer")
        model = load_base(cfg.model, adapter, num_labels=1 if regression else len(labels))
        model.config.pad_token_id = tokenizer.pad_token_id
        if labels is not None:
            model.config.id2label = {i: str(v) for i, v in enumerate(labels)}
            model.config.label2id = {str(v): i for i, v in enumerate(labels)}
        model = apply(model, adapter, token_ids=trainable_token_ids(adapter, tokenizer),
                      gradient_checkpointing=cfg.train.gradient_checkpointing is True)
        train_ds = _tokenize(train, tokenizer, cols, cfg.data.max_length).add_column(
            "labels", encode_labels(train, cols, labels, cfg.data.train or "train dataset"))
        eval_ds = None
        if evals is not None:
            eval_ds = _tokenize(evals, tokenizer, cols, cfg.data.max_length).add_column(
                "labels", encode_labels(evals, cols, labels, cfg.data.eval or "eval dataset"))
        return SimpleNamespace(model=model, tokenizer=tokenizer, labels=labels, train=train_ds, eval=eval_ds)

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        t = cfg.train
        args = TrainingArguments(**{
            **training_kwargs(t, run, dtype, x.eval is not None), "per_device_eval_batch_size": t.eval_batch_size,
            "eval_strategy": "epoch" if x.eval is not None else "no"})
        optimizer = build_optimizer(x.model, adapter, lr=t.lr, weight_decay=t.weight_decay)
        trainer = Trainer(model=x.model, args=args, train_dataset=x.train, eval_dataset=x.eval,
                          data_collator=DataCollatorWithPadding(x.tokenizer), optimizers=(optimizer, None),
                          compute_metrics=_metrics(regression))

        def save(run_: RunDir, model) -> Path:
            adapter_dir = save_adapter(model, run_.path / "adapter", adapter, base=cfg.model)
            if run_.main:
                x.tokenizer.save_pretrained(adapter_dir)
            return adapter_dir
        return Training(trainer,
                        after=lambda model: trainer.evaluate() if x.eval is not None else {}, save=save,
                        finish=lambda model: {"labels": x.labels, "trainable": trainable_summary(model)})

    return run_stage("finetune", cfg, load, build, result_cls=FinetuneResult)
