"""Shared test helpers: run the CLI as a user types it; write tiny corpora."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: int = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def run_cli_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """`tunesmith.cli.main(args)` in this process (no ~8 s of imports per call), as `run_cli`
    reports it; keep one `run_cli` per behaviour for the real exit path."""
    from tunesmith.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["tunesmith", *args], code, out.out, out.err)


def launch_cli(args: list[str], procs: int, launcher: str = "torchrun") -> subprocess.CompletedProcess:
    """`tunesmith --launcher torchrun|accelerate --num-processes N ...` (plain `tunesmith ...` for one
    process), as a user types it; asserts it succeeded."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    launch = ["--launcher", launcher, "--num-processes", str(procs)] if procs > 1 else []
    if launcher == "accelerate":
        launch += ["--accelerate-config", "ddp_cpu"]
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", *launch, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one line on stderr naming every fragment, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    for f in fragments:
        assert f in last, (f, last)


def write_corpus(path: Path, n_docs: int = 60, seed: int = 0) -> Path:
    from tunesmith.pretraining.corpus.generate import generate

    path.write_text("\n\n".join(generate(n_docs, seed)) + "\n", encoding="utf-8")
    return path


def tiny_config(tmp_path: Path, corpus: Path | None = None, **sections) -> dict:
    """A pretraining config small enough for a unit test (a ~30k-parameter model)."""
    from tunesmith.core.config import deep_merge

    base = {
        "model": {"family": "llama", "size": "nano", "layers": 1, "hidden": 32, "heads": 2, "kv_heads": 1,
                  "intermediate": 64},
        "tokenizer": {"vocab_size": 320},
        "data": {"block_size": 32, **({"train": str(corpus)} if corpus else {})},
        "train": {"max_steps": 10, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "logging_steps": 5,
                  "eval_steps": 1000, "save_steps": 1000, "dtype": "fp32"},
        "run": {"dir": str(tmp_path / "run"), "sample_tokens": 5},
    }
    return deep_merge(base, sections)
