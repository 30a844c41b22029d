"""2-process DDP on CPU (gloo) for SFT with a LoRA adapter and for DPO with full fine-tuning
(reference log-probs precomputed): the same final weights as 1 process with the same global batch
and seed, and one writer of the run directory.

Tolerance: 1e-4 absolute on every trained weight (the adapter's for LoRA, the model's for full).
Both runs see the same 8 rows per step (the 2-process run splits them 4 + 4) and DDP averages the
gradients (SFT's token-mean loss is normalised by the token count gathered over both processes),
so the losses and gradient norms agree to ~1e-7 relative. Adam then amplifies that summation-order
noise where a gradient is near zero (its update is ~lr x sign(g)), hence measured after 4 steps at
lr 1e-2: 1.3e-5 (SFT LoRA), 2.4e-6 (DPO full). A real fault is orders of magnitude larger: each
process training on its own half-batch without the all-reduce ends 7e-2 away from the 1-process run.

Dropout: the base model has none; the LoRA dropout is set to 0 here (each process draws its masks
from the same seed, so the 2-process masks cannot equal the 1-process ones); DPO disables dropout."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers import launch_cli

from alignment._sft_fixtures import pretrained  # noqa: E402

pytestmark = pytest.mark.slow
TOL = 1e-4
STEPS = 4
STAGES = {
    "sft": (["--adapter.method", "lora", "--adapter.dropout", "0", "--sft.max_length", "64",
             "--sft.batching", "packed_rows"], "adapter_model"),
    "dpo": (["--adapter.method", "full", "--dpo.max_length", "64"], "model"),
}


def _args(stage, base, run_dir):
    extra, _ = STAGES[stage]
    return [stage, "--model.path", str(base), "--tasks.names", "[upper, add]", "--tasks.train_rows", "32",
            "--tasks.eval_rows", "4", "--train.max_steps", str(STEPS), "--train.batch_size", "8",
            "--train.lr", "1e-2", "--train.dtype", "fp32", "--train.warmup_steps", "0",
            "--train.schedule", "constant", "--train.logging_steps", "1", "--train.save_steps", "2",
            "--train.eval_steps", "1000", "--run.dir", str(run_dir), "--quiet", *extra]




def _worst_diff(one: Path, two: Path, name: str) -> float:
    a, b = (load_file(run / "model" / f"{name}.safetensors") for run in (one, two))
    assert a.keys() == b.keys() and a
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _logged_steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))
    return [json.loads(line)["step"] for line in lines if '"loss"' in line]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return pretrained("tiny", tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("stage, launcher", [("sft", "torchrun"), ("dpo", "accelerate")])
def test_two_processes_match_one_and_only_one_writes(base, sft_single, tmp_path, stage, launcher):
    one, two = tmp_path / "one", tmp_path / "two"
    if stage == "sft":  # the session's 1-process LoRA run (the same flags: distributed._pretrain.sft_args)
        one = sft_single("lora")
    else:
        launch_cli(_args(stage, base, one), 1)
    proc = launch_cli(_args(stage, base, two), 2, launcher)
    assert _worst_diff(one, two, STAGES[stage][1]) <= TOL
    assert proc.stdout.count("run: ") == 1                       # the summary is printed once
    assert _logged_steps(two) == list(range(1, STEPS + 1))       # every step logged once, by one process
    results = json.loads((two / "results.json").read_text())
    assert set(results) == {"metrics", "model_path"} and results["metrics"]["steps"] == STEPS
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert sorted(p.name for p in (two / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
