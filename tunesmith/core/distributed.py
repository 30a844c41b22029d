"""Several processes (torchrun / accelerate launch): the main process goes first through
set-up (validating input, training the tokenizer, writing the run directory); the others
follow and reuse what it wrote."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """A no-op in a single process; otherwise accelerate's main-process-first barrier."""
    if world_size() == 1:
        yield
        return
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        yield
