"""Byte-level BPE tokenizer training (the `tokenizers` library), saved for AutoTokenizer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..core.errors import UserError

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|endoftext|>"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
SPECIAL_TOKENS = [PAD, BOS, EOS, *CHAT_TOKENS]  # ids 0..4 in this order

# ChatML: the slot SFT fills; base models get it so every stage can render conversations.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts`.

    >>> tok = train_tokenizer(["hello world"] * 100, vocab_size=300)
    >>> tok.decode(tok("hello world")["input_ids"])
    'hello world'
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=None, model_max_length=1_000_000,
                                   additional_special_tokens=list(CHAT_TOKENS))
    fast.chat_template = CHATML_TEMPLATE
    return fast


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load a local tokenizer folder; a clear error if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise UserError("tokenizer folder not found", file=p, field="tokenizer.path")
    try:
        tok = AutoTokenizer.from_pretrained(str(p))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a tokenizer from this folder: {str(e).splitlines()[0]}",
                        file=p, field="tokenizer.path") from None
    if tok.eos_token is None:
        raise UserError("tokenizer has no EOS token, needed to separate documents", file=p)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
