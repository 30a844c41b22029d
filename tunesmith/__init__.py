"""tunesmith: build, fine-tune, align and evaluate language models on the Hugging Face stack.

    import tunesmith as ts
    result = ts.pretrain(train={"max_steps": 50})
"""
from __future__ import annotations

__version__ = "0.1.0"

from .core.errors import UserError
from .pretraining import PretrainConfig, PretrainResult, pretrain

__all__ = ["__version__", "UserError", "PretrainConfig", "PretrainResult", "pretrain"]
