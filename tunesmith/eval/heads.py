"""Classification heads for the fine-tune protocol, and saving/loading what they learn.

Two ways to turn a sequence into logits (`finetune.pooling`):

* ``model``: the checkpoint's own `AutoModelForSequenceClassification` head - BERT's [CLS]
  pooler, a decoder's last token - adapted by `tunesmith.adapters.apply` (the head and pooler
  train fully next to the adapter);
* ``mean``: `MeanPoolClassifier` - the bare encoder (`AutoModel`, adapter on its linear
  layers) -> the mean of its last hidden states over the real (unpadded) tokens -> dropout ->
  one linear layer, trained fully. Right for sentence-transformers checkpoints such as
  all-MiniLM-L6-v2, which were trained with mean pooling and whose [CLS] pooler is untrained.

``auto`` picks ``mean`` when the model folder is a sentence-transformers checkpoint whose
`1_Pooling/config.json` says mean pooling, else ``model``.

Saved folders stay standard. ``model``: the `tunesmith.adapters.save_adapter` layout (a stock
PEFT adapter with the head in `modules_to_save`, or a whole model folder for `method: full`).
``mean``: the encoder part saved stock - a PEFT adapter folder for the bare `AutoModel`
(`adapter_config.json`, `adapter_model.safetensors`), or for `method: full` a model folder
(`config.json`, `model.safetensors`, and `1_Pooling/config.json` so that `auto` pooling
reads it as mean-pooled when it starts another task) - plus `head.safetensors` (`weight`, `bias` of the linear
layer) and `tunesmith_classifier.json` (pooling, num_labels, base). `load_classifier(folder)`
rebuilds either kind:

save_classifier(model, "runs/sst2", adapter, base="models/minilm", pooling="mean")
model = load_classifier("runs/sst2")  # same logits as `model`
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import TaskType, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from ..adapters import AdapterConfig, apply, load_adapter, load_base, peft_config, save_adapter
from ..adapters.artifacts import copy_tokenizer_files, resolve_base
from ..adapters.config import METHOD_INIT, PROMPT_METHODS
from ..adapters.targets import default_target_names
from ..core.errors import UserError
from ..core.modelio import load_model, load_peft
from ..core.rundir import atomic_dir

POOLINGS = ("auto", "model", "mean")
RECORD = "tunesmith_classifier.json"
ST_POOLING = Path("1_Pooling") / "config.json"  # sentence-transformers' pooling config
HEAD_FILE = "head.safetensors"


class MeanPoolClassifier(nn.Module):
    """encoder -> masked mean of the last hidden states -> dropout -> linear (1 output = MSE
    regression, else cross-entropy)."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = (F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype)) if self.num_labels == 1
                    else F.cross_entropy(logits, labels.long()))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def resolve_pooling(model_path: str | os.PathLike, pooling: str) -> str:
    """`auto` -> `mean` for a mean-pooling sentence-transformers folder, else `model`."""
    if pooling not in POOLINGS:
        raise UserError(f'unknown pooling "{pooling}"', field="finetune.pooling",
                        fix=f"choose one of {', '.join(POOLINGS)}")
    if pooling != "auto":
        return pooling
    st = Path(model_path) / ST_POOLING
    if st.is_file() and json.loads(st.read_text()).get("pooling_mode_mean_tokens"):
        return "mean"
    return "model"


def _check_mean_adapter(adapter: AdapterConfig) -> None:
    if adapter.method in PROMPT_METHODS or adapter.method in METHOD_INIT or adapter.resolved_quantize() != "none":
        raise UserError(f"pooling mean does not support adapter method {adapter.method} "
                        f"(quantize {adapter.resolved_quantize()})", field="finetune.pooling",
                        fix="use method lora, dora, rslora, lora_fa, vera, ia3 or full unquantized, "
                            "or pooling: model")


def _adapt_encoder(encoder: nn.Module, adapter: AdapterConfig) -> nn.Module:
    """The adapter on the encoder's linear layers (the unused [CLS] pooler left out)."""
    if adapter.method == "full":
        return apply(encoder, adapter.model_copy(update={"task": "causal_lm"}))
    if adapter.target_modules is None:
        targets = default_target_names(encoder, exclude=("pooler",))
        adapter = adapter.model_copy(update={"target_modules": targets})
    config = peft_config(encoder, adapter.model_copy(update={"task": "causal_lm", "modules_to_save": None}))
    config.task_type = TaskType.FEATURE_EXTRACTION
    return get_peft_model(encoder, config)


def build_classifier(model_path: str, adapter: AdapterConfig, num_labels: int, pad_token_id: int,
                     pooling: str = "auto") -> nn.Module:
    """The base model with a fresh head of `num_labels` outputs (1 = regression), adapted."""
    adapter = adapter.model_copy(update={"task": "seq_cls"})
    if resolve_pooling(model_path, pooling) == "model":
        model = load_base(model_path, adapter, num_labels=num_labels, dtype="float32")
        model.config.pad_token_id = pad_token_id
        return apply(model, adapter)
    _check_mean_adapter(adapter)
    encoder = load_model(model_path, AutoModel)
    return MeanPoolClassifier(_adapt_encoder(encoder, adapter), num_labels)


def save_classifier(model: nn.Module, output: str | os.PathLike, adapter: AdapterConfig, *,
                    base: str | os.PathLike) -> Path:
    """Write a fine-tuned classifier (either pooling) to `output`, atomically."""
    adapter = adapter.model_copy(update={"task": "seq_cls"})
    if not isinstance(model, MeanPoolClassifier):
        return save_adapter(model, output, adapter, base=base)
    output = Path(output)
    with atomic_dir(output) as tmp:
        model.encoder.save_pretrained(tmp, safe_serialization=True)
        if adapter.method == "full":  # a whole encoder: a mean-pooling starting point for another task
            (tmp / ST_POOLING).parent.mkdir()
            (tmp / ST_POOLING).write_text(json.dumps(
                {"word_embedding_dimension": model.classifier.in_features, "pooling_mode_mean_tokens": True}))
        save_file({k: v.detach().contiguous() for k, v in model.classifier.state_dict().items()}, tmp / HEAD_FILE)
        copy_tokenizer_files(Path(base), tmp)
        record = {"pooling": "mean", "num_labels": model.num_labels, "dropout": model.dropout.p,
                  "base": str(Path(base).resolve()), "adapter": adapter.model_dump(mode="json")}
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return output


def load_classifier(folder: str | os.PathLike, base: str | os.PathLike | None = None) -> nn.Module:
    """A classifier saved by `save_classifier`, in eval mode (`base` overrides the recorded base)."""
    folder = Path(folder)
    if not (folder / RECORD).is_file():  # pooling "model": an adapter folder or a whole model
        if (folder / "adapter_config.json").is_file():
            return load_adapter(folder, base).eval()
        return load_model(folder, AutoModelForSequenceClassification).eval()
    record = json.loads((folder / RECORD).read_text())
    if not (folder / HEAD_FILE).is_file():
        raise UserError(f"{HEAD_FILE} is missing", file=folder, fix="save again with save_classifier")
    if (folder / "adapter_config.json").is_file():
        encoder = load_peft(load_model(resolve_base(folder, record, base), AutoModel), folder)
    else:
        encoder = load_model(folder, AutoModel)
    model = MeanPoolClassifier(encoder, record["num_labels"], record.get("dropout", 0.1))
    model.classifier.load_state_dict(load_file(folder / HEAD_FILE))
    return model.eval()
