"""2-process DDP on CPU (gloo) through torchrun: same weights as 1 process with the same global
batch and seed, one writer, checkpoints portable between 1 and 2 processes.

Tolerance: 1e-6 absolute on every weight. Both runs see the same 8 blocks per step (the 2-process
run splits them 4 + 4) and DDP averages the gradients, so the only difference is the order of
floating-point summation (measured: 7.5e-9 after 8 AdamW steps)."""
import json

import pytest
from safetensors.torch import load_file

from helpers import launch_cli, write_corpus

pytestmark = pytest.mark.slow
TOL = 1e-6


def _args(corpus, run_dir, steps, extra=()):
    return ["pretrain", "--data.train", str(corpus), "--tokenizer.vocab_size", "320", "--model.layers", "1",
            "--model.hidden", "32", "--model.heads", "2", "--model.kv_heads", "1", "--model.intermediate", "64",
            "--data.block_size", "32", "--train.max_steps", str(steps), "--train.batch_size", "8",
            "--train.save_steps", "4", "--train.eval_steps", "1000", "--train.logging_steps", "1",
            "--train.dtype", "fp32", "--train.schedule", "constant", "--train.warmup_steps", "0",
            "--run.sample_tokens", "0", "--run.dir", str(run_dir), "--quiet", *extra]




def _weights(run_dir):
    return load_file(run_dir / "model" / "model.safetensors")


def _assert_close(a, b):
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= TOL, worst


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("c") / "c.txt", 150)


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("one") / "run"
    launch_cli(_args(corpus, run, 8), 1)
    return run


def test_two_processes_match_one_and_only_one_writes(corpus, single, tmp_path):
    run = tmp_path / "run"
    proc = launch_cli(_args(corpus, run, 8), 2, launcher="accelerate")  # the shipped ddp_cpu config
    _assert_close(_weights(run), _weights(single))
    assert proc.stdout.count("run: ") == 1  # the summary is printed once
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert steps == list(range(1, 9))  # every step logged once, by one process
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in single.iterdir())
    env = json.loads((run / "environment.json").read_text())
    assert env["argv"] and env["seed"] == 42


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_process_counts(corpus, single, tmp_path, first, then):
    run = tmp_path / "run"
    launch_cli(_args(corpus, run, 4), first)
    launch_cli(_args(corpus, run, 8, ["--resume"]), then)
    _assert_close(_weights(run), _weights(single))
