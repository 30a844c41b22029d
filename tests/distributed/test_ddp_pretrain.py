"""2-process DDP on CPU (gloo) through torchrun: same weights as 1 process with the same global
batch and seed, one writer, checkpoints portable between 1 and 2 processes.

Tolerance: 1e-6 absolute on every weight. Both runs see the same 8 blocks per step (the 2-process
run splits them 4 + 4) and DDP averages the gradients, so the only difference is the order of
floating-point summation (measured: 7.5e-9 after 8 AdamW steps)."""
import json

import pytest

from distributed._pretrain import assert_close, pretrain_args, weights
from helpers import launch_cli

pytestmark = pytest.mark.slow


def test_two_processes_match_one_and_only_one_writes(corpus, single, tmp_path):
    run = tmp_path / "run"
    proc = launch_cli(pretrain_args(corpus, run, 8), 2, launcher="accelerate")  # the shipped ddp_cpu config
    assert_close(weights(run), weights(single))
    assert proc.stdout.count("run: ") == 1  # the summary is printed once
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert steps == list(range(1, 9))  # every step logged once, by one process
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in single.iterdir())
    env = json.loads((run / "environment.json").read_text())
    assert env["argv"] and env["seed"] == 42


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_process_counts(corpus, single, tmp_path, first, then):
    run = tmp_path / "run"
    launch_cli(pretrain_args(corpus, run, 4), first)
    launch_cli(pretrain_args(corpus, run, 8, ["--resume"]), then)
    assert_close(weights(run), weights(single))
