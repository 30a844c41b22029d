"""Trainable token rows next to a LoRA adapter (`adapter.trainable_tokens`).

A LoRA adapter leaves the embedding matrix and the LM head frozen. On a base whose tokenizer
has chat tokens that pretraining never used (tunesmith's own bases carry ChatML's
`<|im_start|>`/`<|im_end|>` unused), the rows of those tokens stay as pretraining left them, and a
LoRA SFT learns the answers but not to end its turn with `<|im_end|>`. PEFT's
`trainable_token_indices` trains just those rows (in the input embedding and, when it is not tied
to it, the output head) and saves them in the adapter folder, which stays a stock PEFT folder.

    ids = trainable_token_ids(AdapterConfig(), tokenizer, auto=True)   # the chat template's tokens
    model = apply(base, AdapterConfig(), token_ids=ids)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..core.errors import UserError
from .config import LORA_FAMILY, AdapterConfig
from .targets import matches

FIELD = "adapter.trainable_tokens"
# rendered to find the tokens a chat template puts around turns; a template that rejects a system
# turn (Gemma's, for one) gets the conversation without it
_PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
          {"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]


def chat_template_tokens(tokenizer: Any) -> list[str]:
    """The special and added tokens the tokenizer's chat template (ChatML when it has none) puts
    into a conversation and its generation prompt, in order of first use. Example:

    chat_template_tokens(tok)
    # -> ['<|im_start|>', '<|im_end|>']
    """
    from ..data.chat import render_messages

    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    text = ""
    for messages in (_PROBE, _PROBE[1:]):
        try:
            text = render_messages(messages, tokenizer, add_generation_prompt=True)
            break
        except Exception:  # jinja2 TemplateError from raise_exception() in the template
            continue
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
    return list(dict.fromkeys(tokenizer.convert_ids_to_tokens(i) for i in ids if i in special))


def trainable_token_ids(adapter: AdapterConfig, tokenizer: Any, *, auto: bool = False) -> list[int]:
    """The token ids whose embedding (and output-head) rows train next to `adapter`:
    `trainable_tokens` resolved against `tokenizer`. `auto` means the chat template's special
    tokens when `auto` is True (the sft stage), none otherwise. Methods outside the LoRA family get
    none. Tokens missing from the vocabulary raise a UserError naming the field."""
    wanted = adapter.trainable_tokens
    if wanted == "none" or adapter.method not in LORA_FAMILY:
        return []
    if wanted == "auto":
        if not auto:
            return []
        wanted = chat_template_tokens(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [t for t in wanted if t not in vocab]
    if missing:
        raise UserError(f"tokens not in the tokenizer's vocabulary: {', '.join(map(repr, missing))}",
                        field=FIELD, fix="list single tokens of this tokenizer (e.g. <|im_end|>), or auto / none")
    return list(dict.fromkeys(vocab[t] for t in wanted))


def _module_name(model: nn.Module, module: nn.Module | None) -> str | None:
    if module is None:
        return None
    return next((name for name, m in model.named_modules() if m is module), None)


def token_indices_config(model: nn.Module, adapter: AdapterConfig, token_ids: Sequence[int] | None,
                         adapted: Sequence[str] = ()) -> dict[str, list[int]] | None:
    """peft's `trainable_token_indices` for `model` (not yet wrapped): the input embedding and,
    when its weight is not tied to the embedding, the output head. None without token ids or
    with `trainable_tokens: none`. Under `auto`, a model this cannot apply to (no nn.Embedding
    input; `modules_to_save` already training the whole embedding or head; the embedding or head
    matched by `adapted`, the target_modules names LoRA wraps) gets None; a token list raises a UserError."""
    if not token_ids or adapter.trainable_tokens == "none":
        return None
    explicit = isinstance(adapter.trainable_tokens, list)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    emb_name, head_name = _module_name(model, emb), _module_name(model, head)
    problem = None
    if emb_name is None or not isinstance(emb, nn.Embedding):
        problem = f"{type(model).__name__} has no input embedding (nn.Embedding) to train token rows in"
    elif clash := [m for m in adapter.modules_to_save or ()
                   if emb_name.endswith(m) or (head_name or "").endswith(m)]:
        problem = f"modules_to_save {clash} already trains the whole embedding or head, not row by row"
    elif lora_on := [n for n in (emb_name, head_name) if n and any(matches(n, t) for t in adapted)]:
        problem = f"target_modules put LoRA on {lora_on}, where peft cannot also train token rows"
    elif too_big := [i for i in token_ids if i >= emb.num_embeddings]:
        problem = (f"token ids {too_big} are beyond the model's {emb.num_embeddings} embedding rows "
                   "(resize the embeddings to the tokenizer first)")
    if problem:
        if explicit:
            raise UserError(problem, field=FIELD, fix="set adapter.trainable_tokens: none, or leave "
                            "the embedding and head out of adapter.target_modules / modules_to_save")
        return None
    indices = {emb_name: list(token_ids)}
    tied = head is not None and getattr(head, "weight", None) is emb.weight
    if head_name is not None and not tied and isinstance(head, nn.Linear) and head.bias is None:
        # an untied head trains the same rows; peft ties a tied head to the embedding's rows itself.
        # (peft's wrapped Linear head would drop a bias, so a biased head keeps its rows frozen.)
        indices[head_name] = list(token_ids)
    return indices
