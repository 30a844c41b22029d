"""The tiny pretraining run the distributed tests launch on 1 and 2 processes, and weight comparison.

Tolerance: 1e-6 absolute on every weight. Both runs see the same 8 blocks per step (2 processes
split them 4 + 4) and DDP averages the gradients, so the only difference is the order of
floating-point summation (measured: 7.5e-9 through torchrun, 3.0e-8 through accelerate, after 8
AdamW steps)."""
from __future__ import annotations

from safetensors.torch import load_file

TOL = 1e-6


def pretrain_args(corpus, run_dir, steps: int = 8, extra=()) -> list[str]:
    return ["pretrain", "--data.train", str(corpus), "--tokenizer.vocab_size", "320", "--model.layers", "1",
            "--model.hidden", "32", "--model.heads", "2", "--model.kv_heads", "1", "--model.intermediate", "64",
            "--data.block_size", "32", "--train.max_steps", str(steps), "--train.batch_size", "8",
            "--train.save_steps", "4", "--train.eval_steps", "1000", "--train.logging_steps", "1",
            "--train.dtype", "fp32", "--train.schedule", "constant", "--train.warmup_steps", "0",
            "--run.sample_tokens", "0", "--run.dir", str(run_dir), "--quiet", *extra]


def weights(run_dir):
    return load_file(run_dir / "model" / "model.safetensors")


def assert_close(a, b) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= TOL, worst


def launch(args, procs: int, config: str, check: bool = True):
    """`tunesmith --launcher accelerate --accelerate-config CONFIG --num-processes N ...` as a user
    types it (CONFIG: a shipped name or a file); asserts it succeeded unless check=False."""
    import os
    import subprocess
    import sys

    from helpers import REPO

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tunesmith.cli", "--launcher", "accelerate", "--accelerate-config", config,
           "--num-processes", str(procs), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert not check or proc.returncode == 0, proc.stderr[-3000:]
    return proc


def sft_args(base, run_dir, method: str) -> list[str]:
    """The tiny SFT run (4 steps, global batch 8, lr 1e-2) the DDP and FSDP tests launch on 1 and 2
    processes; `method` is adapter.method (LoRA dropout 0: see test_ddp_alignment.py)."""
    return ["sft", "--model.path", str(base), "--tasks.names", "[upper, add]", "--tasks.train_rows", "32",
            "--tasks.eval_rows", "4", "--train.max_steps", "4", "--train.batch_size", "8", "--train.lr", "1e-2",
            "--train.dtype", "fp32", "--train.warmup_steps", "0", "--train.schedule", "constant",
            "--train.logging_steps", "1", "--train.save_steps", "2", "--train.eval_steps", "1000",
            "--run.dir", str(run_dir), "--quiet", "--adapter.method", method, "--adapter.dropout", "0",
            "--sft.max_length", "64", "--sft.batching", "packed_rows"]  # auto would time layouts per micro-batch size
