"""tunesmith: build, fine-tune, align and evaluate language models on the Hugging Face stack.

    import tunesmith as ts
    result = ts.pretrain(train={"max_steps": 50})
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .core.errors import UserError

# public name -> module that defines it; modules load on first use, so `import tunesmith`
# and the CLI's --help stay fast
_API = {
    "pretrain": "tunesmith.pretraining.stage:pretrain",
    "PretrainResult": "tunesmith.pretraining.stage:PretrainResult",
    "PretrainConfig": "tunesmith.pretraining.config:PretrainConfig",
    "check_data": "tunesmith.data:check_data",
    "prepare_data": "tunesmith.data:prepare",
    "DataPrepConfig": "tunesmith.data:DataPrepConfig",
}


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")


__all__ = ["__version__", "UserError", *_API]
