"""Build base causal LMs from scratch, or continue pretraining existing ones."""
from .config import PretrainConfig
from .stage import PretrainResult, pretrain

__all__ = ["PretrainConfig", "PretrainResult", "pretrain"]
