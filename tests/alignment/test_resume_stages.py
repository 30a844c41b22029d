"""Resume for SFT (LoRA) and DPO (LoRA with the adapter-disabled reference, full fine-tuning with
precomputed reference log-probs): a run that dies after a checkpoint and is resumed with
run.resume=true ends bit-exactly where the uninterrupted run ends, with every step logged once.

A crash is simulated on a finished run: the final model, results and report go, and so does every
checkpoint after step 2, leaving what a process killed during step 4 or 5 leaves behind (its
metrics.jsonl still holds the lines of steps 3-6, which the resume must cut). Bit-exact holds on
CPU because the resumed run replays the same computations in the same order: the Trainer restores
the optimizer, scheduler and RNG states (LoRA dropout stays on at its default 0.05 for SFT) and skips
the batches already seen."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignment._sft_fixtures import pretrained  # noqa: E402
from tunesmith.alignment.preference import dpo  # noqa: E402
from tunesmith.alignment.sft import sft  # noqa: E402

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
STEPS = 6
TRAIN = {"dtype": "fp32", "warmup_steps": 2, "logging_steps": 1, "save_steps": 2, "save_total_limit": 5,
         "eval_steps": 10_000, "max_steps": STEPS, "batch_size": 4, "lr": 1e-2}
TASKS = {"names": ["upper", "add"], "train_rows": 20, "eval_rows": 4}   # 5 batches: step 6 is in the 2nd epoch
CASES = {
    "sft-lora": (sft, {"adapter": {"method": "lora", "rank": 8}, "sft": {"max_length": 64}}, "adapter_model"),
    "dpo-lora": (dpo, {"adapter": {"method": "lora", "rank": 8}, "dpo": {"max_length": 64}}, "adapter_model"),
    "dpo-full": (dpo, {"adapter": {"method": "full"}, "dpo": {"max_length": 64}}, "model"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return pretrained("tiny", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def whole(tiny, tmp_path_factory):
    """The uninterrupted run of a case (run once per module)."""
    done: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in done:
            done[case] = tmp_path_factory.mktemp(case) / "run"
            _run(case, tiny, done[case])
        return done[case]
    return get


def _run(case: str, tiny: Path, run_dir: Path, **run):
    fn, sections, _ = CASES[case]
    return fn(model={"path": str(tiny)}, tasks=TASKS, train=TRAIN, run={"dir": str(run_dir), **run}, **sections)


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _crash_after(run_dir: Path, step: int) -> None:
    """What a run killed after checkpoint-`step` leaves: no outputs, no later checkpoints."""
    for name in ("model", "results.json", "report.md", "report.html", "plots"):
        target = run_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    for ckpt in (run_dir / "checkpoints").glob("checkpoint-*"):
        if int(ckpt.name.split("-")[1]) > step:
            shutil.rmtree(ckpt)


def _assert_same_weights(a: Path, b: Path, name: str) -> None:
    wa, wb = (load_file(run / "model" / f"{name}.safetensors") for run in (a, b))
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), (k, (wa[k] - wb[k]).abs().max().item())


@pytest.fixture
def resumed_from(monkeypatch) -> list:
    """The checkpoint each stage call trained from (None: from the start)."""
    import tunesmith.lifecycle as lifecycle

    seen, train = [], lifecycle.run_training
    monkeypatch.setattr(lifecycle, "run_training", lambda trainer, resume: seen.append(resume) or train(trainer, resume))
    return seen


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_a_crash_matches_the_uninterrupted_run(case, tiny, whole, tmp_path, resumed_from):
    whole, crashed = whole(case), tmp_path / "crashed"
    _run(case, tiny, crashed)
    _crash_after(crashed, 2)
    resumed = _run(case, tiny, crashed, resume=True)
    assert resumed_from[-2:] == [None, crashed / "checkpoints" / "checkpoint-2"]

    _assert_same_weights(whole, crashed, CASES[case][2])
    losses = _losses(crashed)
    assert [s for s, _ in losses] == list(range(1, STEPS + 1))   # steps 3-6 of the first attempt were cut
    assert losses == _losses(whole)
    assert resumed.metrics["steps"] == STEPS
    saved = json.loads((crashed / "results.json").read_text())
    assert saved["model_path"] == str(resumed.model_path) and saved["metrics"]["steps"] == STEPS


def test_resume_of_a_run_killed_after_its_last_checkpoint_trains_no_further(tiny, whole, tmp_path, resumed_from):
    """The process died after saving checkpoint-6 but before writing the model: resuming loads that
    checkpoint and saves it (transformers alone would run a 7th step)."""
    whole, crashed = whole("dpo-lora"), tmp_path / "crashed"
    shutil.copytree(whole, crashed)
    _crash_after(crashed, STEPS)
    resumed = _run("dpo-lora", tiny, crashed, resume=True)
    assert resumed_from[-1] == crashed / "checkpoints" / f"checkpoint-{STEPS}" and resumed.metrics["steps"] == STEPS
    _assert_same_weights(whole, crashed, "adapter_model")
    assert [s for s, _ in _losses(crashed)] == list(range(1, STEPS + 1))
