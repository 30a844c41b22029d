"""Tokenize documents, put EOS after each, and pack them into fixed-size blocks."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import Dataset, IterableDataset

IGNORE_INDEX = -100


def tokenize_documents(tokenizer, docs: Iterable[str], batch_size: int = 256) -> Iterator[list[int]]:
    """Token ids of each document followed by EOS (no BOS: EOS alone separates documents)."""
    eos = tokenizer.eos_token_id
    batch: list[str] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == batch_size:
            yield from (ids + [eos] for ids in tokenizer(batch, add_special_tokens=False)["input_ids"])
            batch = []
    if batch:
        yield from (ids + [eos] for ids in tokenizer(batch, add_special_tokens=False)["input_ids"])


def pack(token_lists: Iterable[list[int]], block_size: int) -> Iterator[list[int]]:
    """Concatenate and cut into blocks of `block_size`; the last block may be shorter.
    No token is dropped."""
    buf: list[int] = []
    for ids in token_lists:
        buf.extend(ids)
        while len(buf) >= block_size:
            yield buf[:block_size]
            buf = buf[block_size:]
    if buf:
        yield buf


def to_example(block: list[int], block_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A training example; a short last block is padded, its padding masked out of the loss."""
    n = len(block)
    ids = torch.full((block_size,), pad_id, dtype=torch.long)
    ids[:n] = torch.tensor(block, dtype=torch.long)
    labels = ids.clone()
    labels[n:] = IGNORE_INDEX
    mask = torch.zeros(block_size, dtype=torch.long)
    mask[:n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class PackedDataset(Dataset):
    """Blocks held in memory (map-style: shuffled by the Trainer, or by a curriculum sampler)."""

    def __init__(self, blocks: list[list[int]], block_size: int, pad_id: int):
        self.blocks, self.block_size, self.pad_id = blocks, block_size, pad_id

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return to_example(self.blocks[i], self.block_size, self.pad_id)

    def num_tokens(self) -> int:
        return sum(len(b) for b in self.blocks)


class StreamingPackedDataset(IterableDataset):
    """Blocks produced on the fly from a document stream (corpora larger than memory).
    `make_docs` is called anew for each pass; `skip_blocks` drops the held-out head."""

    def __init__(self, make_docs: Callable[[], Iterable[str]], tokenizer, block_size: int,
                 skip_blocks: int = 0, take_blocks: int | None = None):
        self.make_docs, self.tokenizer, self.block_size = make_docs, tokenizer, block_size
        self.skip_blocks, self.take_blocks = skip_blocks, take_blocks

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        pad = self.tokenizer.pad_token_id
        while True:
            produced = 0
            blocks = pack(tokenize_documents(self.tokenizer, self.make_docs()), self.block_size)
            for i, block in enumerate(blocks):
                if i < self.skip_blocks:
                    continue
                if self.take_blocks is not None and produced >= self.take_blocks:
                    return
                produced += 1
                yield to_example(block, self.block_size, pad)
            if self.take_blocks is not None or produced == 0:
                return  # held-out set: one pass; training: loop over the corpus again
