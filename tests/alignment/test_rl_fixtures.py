"""Fixtures shared by the reward-model, RLHF and distillation tests (imported by those files;
this module holds no tests). Models are built once per session and cached on disk under
pytest's base temp folder, so every test file that imports a fixture reuses the same model."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")

# every stage run in these tests: fp32, no checkpoints, quiet logs
TRAIN = {"dtype": "fp32", "warmup_steps": 0, "logging_steps": 5, "save_steps": 10_000, "eval_steps": 10_000}


def train(**over) -> dict:
    return {**TRAIN, **over}


@pytest.fixture(scope="session")
def nano_base(tmp_path_factory) -> Path:
    """A nano llama (2 layers, hidden 64, ChatML tokenizer) pretrained 60 steps on the shipped corpus."""
    import tunesmith as ts

    root = tmp_path_factory.getbasetemp() / "rl_nano_base"
    if not (root / "model" / "config.json").is_file():
        torch.set_num_threads(1)
        # lr 3e-4 (not pretraining's 3e-3 default): the margins of the reward/RL/distill tests
        # were measured on this weaker base
        ts.pretrain({"model": {"size": "nano"}, "train": {"max_steps": 60, "batch_size": 16, "dtype": "fp32", "lr": 3e-4,
                     "save_steps": 10_000, "eval_steps": 10_000, "logging_steps": 20},
                     "data": {"block_size": 64}, "run": {"dir": str(root), "overwrite": True, "sample_tokens": 0}})
    return root / "model"


def save_tiny_student(base: Path, folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    """A freshly initialized 1-layer llama using `base`'s tokenizer, saved to `folder`."""
    from transformers import AutoTokenizer

    from tunesmith.pretraining.presets import build_model

    if (folder / "config.json").is_file():
        return folder
    tok = AutoTokenizer.from_pretrained(str(base))
    torch.manual_seed(seed)
    model = build_model("llama", "nano", layers=1, hidden=hidden, heads=2, kv_heads=1, intermediate=2 * hidden,
                        vocab=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_student(nano_base, tmp_path_factory) -> Path:
    return save_tiny_student(nano_base, tmp_path_factory.getbasetemp() / "rl_tiny_student")
