"""Task fine-tuning (transfer learning): classification or regression with an adapter.

A sequence-classification head goes on the base (encoder or decoder), the adapter block
is applied (the head stays fully trainable), and transformers' `Trainer` trains it. The
run directory gets config.yaml, environment.json, metrics.jsonl, results.json and the
adapter folder (`adapter/`, loadable with stock PEFT). This is what the GLUE protocol runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from datasets import Dataset
from pydantic import Field
from transformers import (DataCollatorWithPadding, Trainer, TrainerCallback,
                          TrainingArguments)

from ..core.callbacks import console_progress
from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.modelio import load_tokenizer
from ..core.rundir import RunDir
from .apply import apply, trainable_summary
from .artifacts import save_adapter
from .config import AdapterConfig
from .optim import build_optimizer
from .quantize import load_base
from .task_data import (Columns, check_columns, check_rows, encode_labels, label_names,
                        read_table)
from .tokens import trainable_token_ids


class DataSection(Section):
    train: str | None = Field(None, description="training file (.csv, .tsv or .jsonl)")
    eval: str | None = Field(None, description="evaluation file (same columns); null for none")
    text: str = Field("text", description="column holding the text")
    text_pair: str | None = Field(None, description="column holding the second text of a pair")
    label: str = Field("label", description="column holding the label")
    task: Literal["classification", "regression"] = Field(
        "classification", description="classification (labels are classes) or regression (a number)")
    max_length: int = Field(128, ge=8, description="truncate inputs to this many tokens")


class TrainSection(Section):
    epochs: float = Field(3.0, gt=0, description="passes over the training data")
    max_steps: int = Field(-1, description="stop after this many steps (-1: use epochs)")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (adapters like 1e-4..5e-4)")
    batch_size: int = Field(16, ge=1, description="examples per step")
    eval_batch_size: int = Field(64, ge=1, description="examples per evaluation batch")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps warming up the lr")
    seed: int = Field(0, description="seed for the head init, dropout and data order")
    logging_steps: int = Field(10, ge=1, description="log the training loss every N steps")


class RunSection(Section):
    dir: str = Field("runs/finetune", description="run directory")
    overwrite: bool = Field(False, description="reuse a non-empty run directory")


class FinetuneConfig(Section):
    model: str | None = Field(None, description="base model folder (save_pretrained layout)")
    tokenizer: str | None = Field(None, description="tokenizer folder; null means the model folder")
    data: DataSection = Field(default_factory=DataSection)
    adapter: AdapterConfig = Field(default_factory=lambda: AdapterConfig(task="seq_cls"),
                                   description="the adapter block (task is always seq_cls here)")
    train: TrainSection = Field(default_factory=TrainSection)
    run: RunSection = Field(default_factory=RunSection)


@dataclass
class FinetuneResult:
    run_dir: Path
    adapter_dir: Path
    metrics: dict
    labels: list | None
    trainable: dict


class _MetricsToRunDir(TrainerCallback):
    def __init__(self, run: RunDir) -> None:
        self.run = run

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.run.log_metrics({"step": state.global_step, **logs})


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

    >>> finetune({"model": "runs/nano/model", "data": {"train": "sst2/train.tsv",
    ...           "text": "sentence"}, "adapter": {"method": "lora", "rank": 8}})
    """
    cfg = coerce(FinetuneConfig, config)
    if cfg.model is None:
        raise UserError("no base model given", field="model", fix="set model: PATH")
    adapter = cfg.adapter.model_copy(update={"task": "seq_cls"})
    regression = cfg.data.task == "regression"
    cols = Columns(cfg.data.text, cfg.data.text_pair, cfg.data.label)
    train = _load_split(cfg.data.train, train_dataset, cols, regression, "train")
    if train is None:
        raise UserError("no training data", field="data.train", fix="set data.train: FILE")
    evals = _load_split(cfg.data.eval, eval_dataset, cols, regression, "eval")
    labels = None if regression else label_names(train, cols)
    if labels is not None and len(labels) < 2:
        raise UserError(f"the training data has a single label ({labels})", field="data.label",
                        file=cfg.data.train, fix="classification needs at least two classes")

    run = RunDir.create(cfg.run.dir, overwrite=cfg.run.overwrite, make=False)  # made once all inputs load
    torch.manual_seed(cfg.train.seed)

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, field="tokenizer")
    model = load_base(cfg.model, adapter, num_labels=1 if regression else len(labels))
    model.config.pad_token_id = tokenizer.pad_token_id
    if labels is not None:
        model.config.id2label = {i: str(v) for i, v in enumerate(labels)}
        model.config.label2id = {str(v): i for i, v in enumerate(labels)}
    model = apply(model, adapter, token_ids=trainable_token_ids(adapter, tokenizer))

    train_ds = _tokenize(train, tokenizer, cols, cfg.data.max_length).add_column(
        "labels", encode_labels(train, cols, labels, cfg.data.train or "train dataset"))
    eval_ds = None
    if evals is not None:
        eval_ds = _tokenize(evals, tokenizer, cols, cfg.data.max_length).add_column(
            "labels", encode_labels(evals, cols, labels, cfg.data.eval or "eval dataset"))
    run.start(cfg, seed=cfg.train.seed)

    args = TrainingArguments(
        output_dir=str(run.checkpoints), per_device_train_batch_size=cfg.train.batch_size,
        per_device_eval_batch_size=cfg.train.eval_batch_size, learning_rate=cfg.train.lr,
        num_train_epochs=cfg.train.epochs, max_steps=cfg.train.max_steps,
        weight_decay=cfg.train.weight_decay, warmup_steps=cfg.train.warmup_ratio,
        logging_steps=cfg.train.logging_steps, eval_strategy="epoch" if eval_ds is not None else "no",
        save_strategy="no", report_to="none", seed=cfg.train.seed, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0)
    optimizer = build_optimizer(model, adapter, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    trainer = console_progress(Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                       data_collator=DataCollatorWithPadding(tokenizer), optimizers=(optimizer, None),
                                       compute_metrics=_metrics(regression), callbacks=[_MetricsToRunDir(run)]))
    train_out = trainer.train()
    metrics = {"train_loss": train_out.training_loss}
    if eval_ds is not None:
        metrics.update(trainer.evaluate())

    adapter_dir = save_adapter(model, run.path / "adapter", adapter, base=cfg.model)
    tokenizer.save_pretrained(adapter_dir)
    summary = trainable_summary(model)
    run.write_json("results.json", {"metrics": metrics, "labels": labels, "trainable": summary,
                                    "adapter_dir": str(adapter_dir)})
    return FinetuneResult(run.path, adapter_dir, metrics, labels, summary)
