import json

import pytest
from tunesmith.core.checkpoints import MARKER, last_checkpoint
from tunesmith.core.errors import UserError
from tunesmith.core.rundir import RunDir, atomic_dir


def test_atomic_dir_leaves_old_output_when_writing_fails(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text("second")
            raise RuntimeError("disk full")
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp left behind


def test_run_dir_refuses_to_clobber_and_truncates_metrics_on_resume(tmp_path):
    run = RunDir.create(tmp_path / "r")
    for step in (5, 10, 15):
        run.log_metrics({"step": step, "loss": 1.0 / step})
    with pytest.raises(UserError, match="already exists"):
        RunDir.create(tmp_path / "r")
    run.truncate_metrics_after(10)
    assert [r["step"] for r in run.read_metrics()] == [5, 10]
    run.write_environment(seed=3)
    env = json.loads((run.path / "environment.json").read_text())
    assert env["seed"] == 3 and env["versions"]["torch"]


def test_overwrite_starts_without_the_old_runs_metrics_and_checkpoints(tmp_path):
    def old_run():
        run = RunDir.create(tmp_path / "r", overwrite=True)
        run.log_metrics({"step": 5, "loss": 1.0})
        (run.checkpoints / "checkpoint-5").mkdir(parents=True)
        (run.checkpoints / "checkpoint-5" / MARKER).write_text("5")
        (run.path / "notes.txt").write_text("mine")
        return run
    old_run()
    resumed = RunDir.create(tmp_path / "r", resume=True)  # resume keeps both
    assert resumed.read_metrics() and last_checkpoint(resumed.checkpoints)
    checked = RunDir.create(tmp_path / "r", overwrite=True, make=False)  # validation only: untouched
    assert checked.read_metrics() and last_checkpoint(checked.checkpoints)
    checked.make()
    assert checked.read_metrics() == [] and last_checkpoint(checked.checkpoints) is None
    assert (checked.path / "notes.txt").read_text() == "mine"
    old_run()
    again = RunDir.create(tmp_path / "r", overwrite=True)
    again.log_metrics({"step": 1, "loss": 2.0})
    assert [r["step"] for r in again.read_metrics()] == [1] and not again.checkpoints.exists()


def test_last_checkpoint_ignores_incomplete(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / MARKER).write_text("")
    assert last_checkpoint(tmp_path).name == "checkpoint-20"
    assert last_checkpoint(tmp_path / "missing") is None


def test_default_run_dirs_of_the_same_second_do_not_collide(tmp_path):
    from tunesmith.core.rundir import default_run_dir

    first = default_run_dir("sft", tmp_path)
    first.mkdir(parents=True)
    second = default_run_dir("sft", tmp_path)
    assert second != first and second.name.startswith(first.name[:len("sft-")])


def test_resume_before_any_checkpoint_starts_metrics_over(tmp_path):
    """A run stopped before its first checkpoint, resumed: training starts at step 0 again, and
    metrics.jsonl with it (no step logged twice)."""
    import tunesmith as ts

    from helpers import tiny_config, write_corpus

    cfg = tiny_config(tmp_path, write_corpus(tmp_path / "c.txt", 30),
                      train={"max_steps": 4, "logging_steps": 1, "save_steps": 1000}, run={"sample_tokens": 0})
    import shutil

    ts.pretrain(cfg)
    shutil.rmtree(tmp_path / "run" / "checkpoints")  # as if killed before its first checkpoint
    again = ts.pretrain({**cfg, "run": {**cfg["run"], "resume": True}})
    steps = [r["step"] for r in RunDir(again.run_dir).read_metrics() if "loss" in r]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4]
