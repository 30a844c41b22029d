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


def test_last_checkpoint_ignores_incomplete(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / MARKER).write_text("")
    assert last_checkpoint(tmp_path).name == "checkpoint-20"
    assert last_checkpoint(tmp_path / "missing") is None
