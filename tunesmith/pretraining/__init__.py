"""Build base causal LMs from scratch, or continue pretraining existing ones."""
from .config import PretrainConfig


def __getattr__(name: str):  # the stage (and torch/transformers) load on first use
    if name in ("pretrain", "PretrainResult"):
        from . import stage
        return getattr(stage, name)
    raise AttributeError(name)


__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]
