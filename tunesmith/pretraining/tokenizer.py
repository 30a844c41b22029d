"""Byte-level BPE tokenizer training (the `tokenizers` library), saved for AutoTokenizer."""
from __future__ import annotations

import os
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..core.modelio import load_tokenizer as load_any_tokenizer
from ..data.chat import CHATML_TEMPLATE  # base models get ChatML so every stage can render conversations

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|endoftext|>"
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
SPECIAL_TOKENS = [PAD, BOS, EOS, *CHAT_TOKENS]  # ids 0..4 in this order



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
    """A pretraining tokenizer: EOS separates documents."""
    return load_any_tokenizer(path, field="tokenizer.path", need_eos=True)
