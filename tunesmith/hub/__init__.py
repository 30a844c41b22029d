"""Hugging Face Hub: model cards and push.

    from tunesmith.hub import push
    push("runs/sft", {"repo": "alice/tiny-sft", "private": True})
"""
from .card import model_card
from .config import PushConfig
from .push import PushResult, push

__all__ = ["push", "PushConfig", "PushResult", "model_card"]
