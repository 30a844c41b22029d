"""What every alignment stage shares: the `model:` section and loading the policy (quantized and
wrapped as the `adapter:` block says). The run itself goes through `tunesmith.lifecycle`."""
from __future__ import annotations


from pydantic import Field
from transformers import PreTrainedTokenizerBase

from ..adapters import AdapterConfig, apply, load_base
from ..adapters.tokens import trainable_token_ids
from ..core.config import Section
from ..core.modelio import check_model_folder
from ..core.modelio import load_tokenizer as load_any_tokenizer
from ..data.chat import CHATML_TEMPLATE


class ModelSection(Section):
    path: str = Field(description="local model folder (save_pretrained), e.g. runs/x/model")
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
                chat_tokens: bool = False):
    """(model wrapped with its adapter, tokenizer). The base is quantized when the adapter says so.
    `adapter.trainable_tokens` is resolved against the tokenizer; `chat_tokens` makes its `auto`
    mean the chat template's special tokens (the sft stage), otherwise none."""
    check_model_folder(model.path, allow_pickle=model.allow_pickle)
    tok = load_tokenizer(model)
    token_ids = trainable_token_ids(adapter, tok, auto=chat_tokens)  # bad tokens fail before the model loads
    base = load_base(model.path, adapter, num_labels=num_labels, trust_remote_code=model.trust_remote_code,
                     allow_pickle=model.allow_pickle)
    if getattr(base.config, "pad_token_id", None) is None:
        base.config.pad_token_id = tok.pad_token_id
    return apply(base, adapter, token_ids=token_ids), tok
