"""Crash safety: NaN stops at the step with the last good checkpoint intact, disk full keeps
the previous checkpoint, a partial checkpoint is never resumed, SIGKILL + resume is bit-exact."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tunesmith as ts
from tunesmith.core.checkpoints import MARKER, last_checkpoint
from tunesmith.core.errors import TrainingStopped
from tunesmith.pretraining.trainer import PretrainTrainer
from helpers import REPO, tiny_config, write_corpus


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "c.txt", 150)


def _poison_at(monkeypatch, bad_step: int):
    original = PretrainTrainer.compute_loss

    def compute_loss(self, model, inputs, *a, **kw):
        loss = original(self, model, inputs, *a, **kw)
        if model.training and self.state.global_step + 1 == bad_step:
            loss = loss * float("nan")
        return loss
    monkeypatch.setattr(PretrainTrainer, "compute_loss", compute_loss)


def test_nan_stops_at_that_step_and_keeps_last_good_checkpoint(tmp_path, corpus, monkeypatch):
    _poison_at(monkeypatch, 7)
    cfg = tiny_config(tmp_path, corpus, train={"max_steps": 12, "save_steps": 5})
    with pytest.raises(TrainingStopped, match="step 7") as e:
        ts.pretrain(cfg)
    assert "checkpoint-5" in str(e.value)
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-5"]
    weights = load_file(ckpts / "checkpoint-5" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (tmp_path / "run" / "model").exists()


def test_nan_batch_skipped_when_configured(tmp_path, corpus, monkeypatch):
    _poison_at(monkeypatch, 4)
    result = ts.pretrain(tiny_config(tmp_path, corpus, train={"max_steps": 8, "on_nonfinite": "skip"}))
    weights = load_file(result.model_path / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    skipped = [json.loads(l) for l in (result.run_dir / "metrics.jsonl").read_text().splitlines()
               if "skipped_nonfinite_batch" in l]
    assert [s["step"] for s in skipped] == [4]


def test_disk_full_during_checkpoint_keeps_previous_and_resume_ignores_partial(tmp_path, corpus, monkeypatch):
    original = PretrainTrainer._save_checkpoint

    def save_checkpoint(self, model, trial):
        if self.state.global_step == 10:  # a half-written checkpoint, then ENOSPC
            partial = tmp_path / "run" / "checkpoints" / "checkpoint-10"
            partial.mkdir()
            (partial / "model.safetensors").write_bytes(b"\x00" * 10)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, model, trial)
    monkeypatch.setattr(PretrainTrainer, "_save_checkpoint", save_checkpoint)
    cfg = tiny_config(tmp_path, corpus, train={"max_steps": 15, "save_steps": 5})
    with pytest.raises(TrainingStopped, match="disk full.*checkpoint-5"):
        ts.pretrain(cfg)
    monkeypatch.setattr(PretrainTrainer, "_save_checkpoint", original)
    assert last_checkpoint(tmp_path / "run" / "checkpoints").name == "checkpoint-5"
    cfg["run"]["resume"] = True
    assert ts.pretrain(cfg).metrics["steps"] == 15


def _run_until(cmd, env, metrics, step, timeout=180):
    """Start `cmd`, SIGKILL it once metrics.jsonl shows `step`; returns whether it was killed."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while proc.poll() is None:
        if metrics.exists() and any(json.loads(l).get("step", 0) >= step and "loss" in l
                                    for l in metrics.read_text().splitlines()[-3:]):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        assert time.time() < deadline
        time.sleep(0.05)
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    return False


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_bit_exact(tmp_path, corpus):
    """Kill at 5 random steps (one of them followed by corrupting the newest checkpoint the way a
    kill during its write leaves it: truncated weights, no marker); resume each time; the final
    weights equal an uninterrupted run's exactly (CPU, fp32, same seed: bit-exact)."""
    steps, save = 40, 4
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    ref_cfg = tiny_config(tmp_path / "ref", corpus, train={"max_steps": steps, "save_steps": save,
                                                           "logging_steps": 1})
    reference = ts.pretrain(ref_cfg)
    cfg = tiny_config(tmp_path, corpus, train={"max_steps": steps, "save_steps": save, "logging_steps": 1})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    kill_steps = sorted(random.Random(7).sample(range(3, steps - 2), 5))
    for i, k in enumerate(kill_steps):
        cmd = [sys.executable, "-m", "tunesmith.cli", "pretrain", str(recipe)] + (["--resume"] if i else [])
        assert _run_until(cmd, env, run_dir / "metrics.jsonl", k)
        if i == 2:  # as if killed while writing the newest checkpoint
            newest = last_checkpoint(run_dir / "checkpoints")
            (newest / MARKER).unlink()
            with open(newest / "model.safetensors", "r+b") as f:
                f.truncate(100)
    assert not _run_until([sys.executable, "-m", "tunesmith.cli", "pretrain", str(recipe), "--resume"],
                          env, run_dir / "metrics.jsonl", steps + 1)
    final = load_file(run_dir / "model" / "model.safetensors")
    ref = load_file(reference.model_path / "model.safetensors")
    assert final.keys() == ref.keys()
    for k in ref:
        assert torch.equal(final[k], ref[k]), k
