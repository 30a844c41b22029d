"""What every alignment stage shares: the `model:` section and loading the policy (quantized and
wrapped as the `adapter:` block says). The run itself goes through `tunesmith.lifecycle`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from transformers import PreTrainedTokenizerBase

from ..adapters import AdapterConfig, apply, load_base
from ..adapters.chain import is_adapter_folder, model_folder, run_output
from ..adapters.tokens import trainable_token_ids
from ..compat import expose_head_bias
from ..core.config import Section
from ..core.errors import UserError
from ..core.modelio import check_model_folder
from ..core.modelio import load_tokenizer as load_any_tokenizer
from ..data.chat import CHATML_TEMPLATE


class ModelSection(Section):
    path: str = Field(description=(
        "local model folder (save_pretrained), a run directory, or an adapter folder (loaded on its "
        "recorded base), e.g. runs/sft/model"))
    adapter: Literal["merge", "continue"] = Field("merge", description=(
        "when path is an adapter folder: merge (its adapter merged into its base once, written beside it, "
        "and this stage's adapter trained on that) | continue (train that adapter further; the adapter "
        "block's method, rank and targets are then the folder's)"))
    tokenizer: str | None = Field(None, description="tokenizer folder (default: the model folder)")
    chat_template: str | None = Field(
        None, description="Jinja chat template or 'chatml'; default: the tokenizer's own, else ChatML")
    trust_remote_code: bool = Field(False, description="allow custom model code (off: safer)")
    allow_pickle: bool = Field(False, description="allow pickle (.bin) weights, which can run code on load")


def load_tokenizer(model: ModelSection) -> PreTrainedTokenizerBase:
    """The `model:` section's tokenizer (`core.modelio.load_tokenizer`) with its chat template:
    `model.chat_template` when given ('chatml' or a Jinja template), else the tokenizer's own, else ChatML."""
    tok = load_any_tokenizer(model.tokenizer or model.path, field="model.tokenizer",
                             trust_remote_code=model.trust_remote_code)
    if model.chat_template == "chatml" or (model.chat_template is None and not tok.chat_template):
        tok.chat_template = CHATML_TEMPLATE
    elif model.chat_template:
        tok.chat_template = model.chat_template
    return tok


def load_policy(model: ModelSection, adapter: AdapterConfig, num_labels: int | None = None,
                chat_tokens: bool = False, gradient_checkpointing: bool = False):
    """(model wrapped with its adapter, tokenizer). The base is quantized when the adapter says so.
    `adapter.trainable_tokens` is resolved against the tokenizer; `chat_tokens` makes its `auto`
    mean the chat template's special tokens (the sft stage), otherwise none. `model.path` may be a
    run directory or an adapter folder (`tunesmith.adapters.chain`; `model.adapter` says how)."""
    source = run_output(model.path)
    if is_adapter_folder(source) and model.adapter == "continue":
        return _continue_adapter(model, source, num_labels)
    model = model.model_copy(update={"path": str(model_folder(source))})
    check_model_folder(model.path, allow_pickle=model.allow_pickle)
    tok = load_tokenizer(model)
    token_ids = trainable_token_ids(adapter, tok, auto=chat_tokens)  # bad tokens fail before the model loads
    base = load_base(model.path, adapter, num_labels=num_labels, trust_remote_code=model.trust_remote_code,
                     allow_pickle=model.allow_pickle)
    if getattr(base.config, "pad_token_id", None) is None:
        base.config.pad_token_id = tok.pad_token_id
    policy = apply(base, adapter, token_ids=token_ids, gradient_checkpointing=gradient_checkpointing)
    policy.tunesmith_base = model.path  # what the saved adapter records as its base
    return policy, tok


def _continue_adapter(model: ModelSection, folder: Path, num_labels: int | None) -> tuple[Any, Any]:
    """The adapter at `folder` on its recorded base, trainable (`model.adapter: continue`)."""
    from ..adapters.artifacts import load_adapter, read_record, resolve_base

    record = read_record(folder)
    previous = AdapterConfig.model_validate(record["adapter"])
    if (previous.task == "seq_cls") != (num_labels is not None):
        raise UserError(f"holds a {previous.task} adapter, which this stage cannot continue", file=folder,
                        field="model.adapter", fix="set model.adapter: merge")
    tok = load_tokenizer(model.model_copy(update={"path": str(folder)}))
    policy = load_adapter(folder, trainable=True)
    expose_head_bias(policy)  # as apply() does: TRL's fused LM-head loss reads lm_head.bias
    if getattr(policy.config, "pad_token_id", None) is None:
        policy.config.pad_token_id = tok.pad_token_id
    policy.tunesmith_base = str(resolve_base(folder, record, None))
    policy.tunesmith_adapter = previous
    return policy, tok
