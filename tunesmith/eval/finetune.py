"""Fine-tune-and-evaluate: a classification/regression head (LoRA or full) per task.

Every task is cast into sequence(-pair) classification the standard way:

* single sentences and pairs (CoLA ... WNLI, BoolQ, CB, RTE, AX-*): the text fields as a pair;
* WiC: ("word: sentence1", "word: sentence2"); WSC: (text, "pronoun refers to candidate");
* MultiRC: one binary example per answer, (paragraph, question + answer);
* COPA and ReCoRD: one binary example per candidate (premise + cue / choice; passage / query
  with the entity filled in); the candidate with the highest positive-class margin wins.

The head is the checkpoint's own or a mean-pooling one (`finetune.pooling`, see `heads.py`).
Training is transformers' `Trainer` (length-grouped batches, linear schedule with warm-up);
scoring is our own length-sorted, dynamically padded batched inference with LoRA deltas folded
into the weights for the duration (`adapters.merged_for_inference`). With
`finetune.save` the trained classifier is kept (`heads.save_classifier`/`load_classifier`).

metrics = finetune_and_score("models/minilm", get_task("glue", "rte"), train, dev, FinetuneSection())
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from ..adapters.merge import merged_for_inference
from ..core.callbacks import console_progress
from ..core.errors import UserError
from ..core.layer_decay import use_layer_lr_decay
from ..core.modelio import load_tokenizer as load_any_tokenizer
from ..core.train_config import EpochTrainSection
from ..core.trainer_args import training_kwargs
from .batching import pad, sorted_batches
from .config import FinetuneSection
from .heads import build_classifier, save_classifier
from .metrics import compute
from .tasks import Task


@dataclass(frozen=True)
class Instance:
    text_a: str
    text_b: str | None
    label: float
    row: int  # index of the row this instance scores


def cast(task: Task, rows: Sequence[dict]) -> list[Instance]:
    """Rows -> classification instances (several per row for COPA/ReCoRD).

    cast(get_task("superglue", "copa"), [copa_row])[1].text_b
    # -> 'because The sun was rising.'
    """
    out: list[Instance] = []
    for i, r in enumerate(rows):
        label = r.get("label", -1)
        if task.name == "copa":
            cue = "because" if r["question"] == "cause" else "therefore"
            out += [Instance(r["premise"], f"{cue} {r[c]}", float(label == j), i)
                    for j, c in enumerate(("choice1", "choice2"))]
        elif task.name == "record":
            passage = r["passage"].replace("@highlight\n", "- ")
            out += [Instance(passage, r["query"].replace("@placeholder", e), float(e in r["answers"]), i)
                    for e in r["entities"]]
        elif task.name == "wic":
            out.append(Instance(f"{r['word']}: {r['sentence1']}", f"{r['word']}: {r['sentence2']}", label, i))
        elif task.name == "wsc":
            out.append(Instance(r["text"], f"{r['span2_text']} refers to {r['span1_text']}", label, i))
        elif task.name == "multirc":
            out.append(Instance(r["paragraph"], f"{r['question']} {r['answer']}", label, i))
        elif task.name == "boolq":
            out.append(Instance(r["question"], r["passage"], label, i))
        else:
            fields = task.inputs
            out.append(Instance(r[fields[0]], r[fields[1]] if len(fields) > 1 else None, label, i))
    return out


def _tokenize(tokenizer: Any, instances: Sequence[Instance], max_length: int) -> list[dict[str, list[int]]]:
    pairs = all(x.text_b is not None for x in instances)
    enc = tokenizer([x.text_a for x in instances], [x.text_b for x in instances] if pairs else None,
                    truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(instances))]


def load_tokenizer(path: str) -> Any:
    """A tokenizer with a pad token (decoders reuse EOS) for padded scoring batches."""
    return load_any_tokenizer(path, field="model.tokenizer", need_pad=True)


def resolved_hparams(task: Task, cfg: FinetuneSection) -> dict[str, Any]:
    """The task defaults with the user's overrides applied."""
    d = task.defaults
    full = cfg.adapter.method == "full"
    return {"epochs": cfg.epochs or d.epochs, "lr": cfg.lr or (d.lr_full if full else d.lr_lora),
            "max_length": cfg.max_length or d.max_length, "batch_size": cfg.batch_size or d.batch_size,
            "max_steps": cfg.max_steps}


def balanced_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """n / (classes * count) per class, scikit-learn's `class_weight="balanced"`; a class absent
    from `labels` (a 32-row few-shot draw) gets 0 and the others share n over the present ones.

    >>> balanced_weights([0, 1, 1, 1], 2)
    tensor([2.0000, 0.6667])
    """
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_labels).double()
    present = int((counts > 0).sum())
    return torch.where(counts > 0, counts.sum() / (present * counts.clamp(min=1)), 0.0).float()


def _weighted_loss(weights: torch.Tensor):
    """Class-weighted cross-entropy summed over the rows and divided by the rows in the step
    (`num_items_in_batch`, across gradient accumulation and devices, as transformers' own
    losses do; the batch's rows when it is not given): the weighted empirical risk."""
    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        labels = labels.long()
        per_row = F.cross_entropy(logits.float(), labels, reduction="none") * weights.to(logits.device)[labels]
        return per_row.sum() / (num_items_in_batch if num_items_in_batch is not None else labels.numel())
    return loss


def train(model: nn.Module, tokenizer: Any, task: Task, rows: Sequence[dict], cfg: FinetuneSection,
          seed: int, output_dir: str) -> dict[str, float]:
    """Fit `model` on `rows` with transformers' Trainer; returns the train summary."""
    hp = resolved_hparams(task, cfg)
    instances = [x for x in cast(task, rows) if x.label >= 0]
    if not instances:
        raise UserError(f"{task.title}: the train split has no labelled rows", field="data.split")
    features = _tokenize(tokenizer, instances, hp["max_length"])
    for f, x in zip(features, instances):
        f["labels"] = float(x.label) if task.kind == "regression" else int(x.label)
    steps_per_epoch = math.ceil(len(features) / hp["batch_size"])
    train = EpochTrainSection(epochs=hp["epochs"], max_steps=hp["max_steps"] or -1, lr=hp["lr"],
                              batch_size=hp["batch_size"], schedule="linear", warmup_steps=cfg.warmup_ratio,
                              weight_decay=cfg.weight_decay, seed=seed, logging_steps=max(1, steps_per_epoch // 2))
    args = TrainingArguments(**{**training_kwargs(train, output_dir, "fp32", has_eval=False),
                                "save_strategy": "no", "train_sampling_strategy": "group_by_length"})
    loss = None
    if cfg.class_weights == "balanced" and task.kind != "regression":
        loss = _weighted_loss(balanced_weights([int(x.label) for x in instances], task.num_labels))
    trainer = console_progress(Trainer(model=model, args=args, train_dataset=Dataset.from_list(features),
                                       data_collator=DataCollatorWithPadding(tokenizer), compute_loss_func=loss))
    use_layer_lr_decay(trainer, cfg.layer_lr_decay)
    out = trainer.train()
    return {"train_loss": float(out.training_loss), "train_steps": int(out.global_step),
            "train_seconds": float(out.metrics.get("train_runtime", 0.0))}


def scores(model: nn.Module, tokenizer: Any, instances: Sequence[Instance], *, max_length: int,
           batch_size: int = 64) -> list[torch.Tensor]:
    """Head outputs per instance, batched by sorted length with dynamic padding."""
    features = _tokenize(tokenizer, instances, max_length)
    out: list[torch.Tensor] = [torch.empty(0)] * len(features)
    device = next(model.parameters()).device
    model.eval()
    with merged_for_inference(model), torch.inference_mode():
        for batch in sorted_batches([len(f["input_ids"]) for f in features], batch_size):
            ids, mask = pad([features[i]["input_ids"] for i in batch], tokenizer.pad_token_id)
            inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            if "token_type_ids" in features[0]:
                inputs["token_type_ids"] = pad([features[i]["token_type_ids"] for i in batch], 0)[0].to(device)
            logits = model(**inputs).logits.float().cpu()
            for i, row in zip(batch, logits):
                out[i] = row
    return out


def predict(model: nn.Module, tokenizer: Any, task: Task, rows: Sequence[dict], *, max_length: int,
            batch_size: int = 64) -> list[Any]:
    """Predictions for `rows` in the form `metrics.compute` takes."""
    instances = cast(task, rows)
    logits = scores(model, tokenizer, instances, max_length=max_length, batch_size=batch_size)
    if task.kind == "regression":
        return [float(x[0]) for x in logits]
    if task.kind != "choice":
        return [int(x.argmax()) for x in logits]
    first: dict[int, int] = {}
    best: dict[int, tuple[float, int]] = {}  # row -> (margin, candidate index)
    for j, (x, inst) in enumerate(zip(logits, instances)):
        first.setdefault(inst.row, j)
        margin = float(x[1] - x[0])
        if inst.row not in best or margin > best[inst.row][0]:
            best[inst.row] = (margin, j - first[inst.row])
    if task.name == "copa":
        return [best[i][1] for i in range(len(rows))]
    return [rows[i]["entities"][best[i][1]] if i in best else "" for i in range(len(rows))]


def finetune_and_score(model_path: str, task: Task, train_rows: Sequence[dict], eval_rows: Sequence[dict],
                       cfg: FinetuneSection, *, seed: int = 42, tokenizer_path: str | None = None,
                       eval_batch_size: int = 64, save_to: str | os.PathLike | None = None) -> dict[str, float]:
    """Fine-tune a fresh head on `train_rows`, score `eval_rows`: metrics + train summary.

    finetune_and_score("minilm", get_task("glue", "sst2"), train[:2000], dev, FinetuneSection())
    # -> {'accuracy': 0.88, 'train_loss': 0.31, 'train_steps': 189, 'train_seconds': 95.2}
    """
    set_seed(seed)
    tokenizer = load_tokenizer(tokenizer_path or model_path)
    model = build_classifier(model_path, cfg.adapter, task.num_labels, tokenizer.pad_token_id, cfg.pooling)
    with tempfile.TemporaryDirectory(prefix="tunesmith-eval-") as tmp:
        summary = train(model, tokenizer, task, train_rows, cfg, seed, tmp)
    hp = resolved_hparams(task, cfg)
    if save_to is not None:
        save_classifier(model, save_to, cfg.adapter, base=model_path)
    preds = predict(model, tokenizer, task, eval_rows, max_length=hp["max_length"], batch_size=eval_batch_size)
    return {**compute(task, preds, eval_rows), **summary}
