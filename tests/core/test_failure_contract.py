"""The failure contract where paths, file modes, damaged weights and Ctrl-C are concerned (issue 18):
bad input is one `error:` line, exit 2, nothing written; files honour the umask; an interrupted run
says how to resume it."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
import yaml

from helpers import assert_user_error, run_cli, run_cli_here, tiny_config, write_corpus
from tunesmith.core.errors import UserError
from tunesmith.core.rundir import RunDir, atomic_dir, atomic_write_text


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "good.txt").write_text("\n\n".join(f"Tom had {i} apples. He ate one." for i in range(30)))
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


def _pretrain(ws, *extra):
    return ["pretrain", "--data.train", str(ws / "good.txt"), "--tokenizer.vocab_size", "300", *extra]


# --- 1. --run.dir that cannot be a writable folder ----------------------------------------------

@pytest.mark.parametrize("where, fragments", [
    ("afile", ["afile", '"run.dir"', "existing file, not a folder", "choose another --run.dir"]),
    ("afile/run", ["afile/run", '"run.dir"', "lies under", "which is a file", "choose another --run.dir"]),
])
def test_run_dir_that_is_or_lies_under_a_file_is_one_line(ws, capsys, where, fragments):
    before = _tree(ws)
    proc = run_cli_here(capsys, *_pretrain(ws, "--run.dir", str(ws / where)))
    assert_user_error(proc, *fragments)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _tree(ws) == before and (ws / "afile").read_text() == "not a folder"


def test_run_dir_that_is_a_file_through_the_real_exit_path(ws):
    before = _tree(ws)
    proc = run_cli(*_pretrain(ws, "--run.dir", "afile"), cwd=ws)
    assert_user_error(proc, "afile", '"run.dir"', "existing file, not a folder")
    assert _tree(ws) == before


def test_run_dir_in_a_read_only_folder(ws, capsys):
    ro = ws / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root: permissions are not enforced
            pytest.skip("permissions are not enforced for this user (root)")
        before = _tree(ws)
        proc = run_cli_here(capsys, *_pretrain(ws, "--run.dir", str(ro / "deep" / "run")))
        assert_user_error(proc, str(ro / "deep" / "run"), '"run.dir"', "read-only", f"make {ro} writable")
        assert _tree(ws) == before
    finally:
        ro.chmod(0o755)


def test_run_dir_on_a_read_only_file_system(ws, capsys):
    """/proc/sys is read-only even for root in most containers: the same check, enforced."""
    if os.access("/proc/sys", os.W_OK) or not os.path.isdir("/proc/sys"):
        pytest.skip("no read-only file system at /proc/sys here")
    proc = run_cli_here(capsys, *_pretrain(ws, "--run.dir", "/proc/sys/tunesmith-run"))
    assert_user_error(proc, "/proc/sys/tunesmith-run", '"run.dir"', "/proc/sys is read-only")
    assert not os.path.exists("/proc/sys/tunesmith-run")


def test_run_dir_create_checks_before_making_anything(tmp_path):
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "f", tmp_path / "f" / "a" / "b"):
        with pytest.raises(UserError) as e:
            RunDir.create(bad, make=False)
        assert e.value.field == "run.dir" and str(bad) in str(e.value) and e.value.fix
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="broken symbolic link"):
        RunDir.create(tmp_path / "dangling" / "run", make=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "f"]
    assert RunDir.create(tmp_path / "new" / "run", make=False).path == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checked, not made


# --- 2. files and folders honour the umask ------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o027, 0o640, 0o750)], ids=["022", "077", "027"])
def test_written_files_and_folders_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    import numpy as np
    from safetensors.numpy import save_file

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_text(tmp_path / "a.txt", "y")  # replacing keeps the umask mode too
        run = RunDir.create(tmp_path / "run").start({"train": {"lr": 1}}, seed=1)
        run.write_json("results.json", {"ok": 1})
        with atomic_dir(run.path / "model") as tmp:
            (tmp / "config.json").write_text("{}")
            save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp / "model.safetensors"))  # written 0600
            (tmp / "sub").mkdir()
    finally:
        os.umask(old)

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)
    for f in (tmp_path / "a.txt", run.path / "config.yaml", run.path / "environment.json",
              run.path / "results.json", run.path / "model" / "config.json", run.path / "model" / "model.safetensors"):
        assert mode(f) == file_mode, (f, oct(mode(f)))
    for d in (run.path / "model", run.path / "model" / "sub"):
        assert mode(d) == dir_mode, (d, oct(mode(d)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "run"]  # no temp left


# --- 3. a damaged model.safetensors -------------------------------------------------------------

@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    from tunesmith.pretraining.presets import build_model

    folder = tmp_path_factory.mktemp("nano") / "m"
    build_model("llama", "nano").save_pretrained(folder)
    return folder


def _damaged(nano, ws, how):
    folder = ws / f"model-{how}"
    shutil.copytree(nano, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[:len(data) // 2], "random": os.urandom(len(data)),
                         "empty": b"", "bad header": data[:8] + b"{garbage" + data[16:]}[how])
    return folder


@pytest.mark.parametrize("how, reason", [("truncated", "not fully covered"), ("random", "header too large"),
                                         ("empty", "header too small"), ("bad header", "invalid JSON")])
def test_damaged_weights_are_one_line_naming_the_file(nano, ws, capsys, how, reason):
    folder = _damaged(nano, ws, how)
    before = _tree(ws)
    proc = run_cli_here(capsys, *_pretrain(ws, "--model.from_pretrained", str(folder), "--run.dir", str(ws / "run")))
    assert_user_error(proc, str(folder / "model.safetensors"), reason, "the file is damaged; re-save or re-download")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _tree(ws) == before


def test_truncated_weights_through_the_real_exit_path(nano, ws):
    folder = _damaged(nano, ws, "truncated")
    before = _tree(ws)
    proc = run_cli(*_pretrain(ws, "--model.from_pretrained", str(folder), "--run.dir", "run"), cwd=ws)
    assert_user_error(proc, "model.safetensors", "the file is damaged")
    assert _tree(ws) == before


def test_a_shard_missing_from_an_index_and_the_loader_itself(nano, tmp_path):
    from tunesmith.core.modelio import check_model_folder, load_model

    folder = tmp_path / "sharded"
    shutil.copytree(nano, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(UserError, match="model-00002-of-00002.safetensors.*missing"):
        check_model_folder(folder)
    truncated = tmp_path / "t"
    shutil.copytree(nano, truncated)
    (truncated / "model.safetensors").write_bytes((nano / "model.safetensors").read_bytes()[:100])
    with pytest.raises(UserError) as e:
        load_model(truncated)
    assert e.value.file == truncated / "model.safetensors" and "damaged" in e.value.fix


# --- 4. Ctrl-C says how to resume ---------------------------------------------------------------

def test_resume_command_keeps_the_arguments_and_adds_the_run(tmp_path, monkeypatch):
    from tunesmith.cli import resume_command

    monkeypatch.setattr(RunDir, "current", RunDir(tmp_path / "r"))
    assert resume_command(["sft", "r.yaml", "--train.lr", "1e-4"], "sft") == \
        f"tunesmith sft r.yaml --train.lr 1e-4 --run.dir {tmp_path / 'r'} --run.resume true"
    assert resume_command(["sft", "--run.dir=old", "--run.resume", "false", "--x", "1"], "sft") == \
        f"tunesmith sft --x 1 --run.dir {tmp_path / 'r'} --run.resume true"
    assert resume_command(["sft", "--resume", "--run.dir", "a b"], "sft") == \
        f"tunesmith sft --resume --run.dir {tmp_path / 'r'}"  # --resume kept: it reads the saved config
    assert resume_command(["eval", "--model", "m"], "eval") is None  # eval does not resume
    (tmp_path / "pipeline.json").write_text("{}")
    monkeypatch.setattr(RunDir, "current", RunDir(tmp_path / "2-sft"))
    assert resume_command(["run", "p.yaml"], "run") == f"tunesmith run p.yaml --run.dir {tmp_path}"
    monkeypatch.setattr(RunDir, "current", None)
    assert resume_command(["sft", "r.yaml"], "sft") is None  # no run started: nothing to resume


def test_ctrl_c_before_a_run_starts_just_says_interrupted(ws, capsys, monkeypatch):
    from tunesmith.cli import train

    def stop(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "_resolve", stop)
    proc = run_cli_here(capsys, *_pretrain(ws, "--run.dir", str(ws / "run")))
    assert proc.returncode == 130 and proc.stderr.strip() == "interrupted"


def test_ctrl_c_during_training_prints_the_command_that_resumes(tmp_path, capsys, monkeypatch):
    """A real SIGINT to a pretraining run in a default run folder, then the printed command run."""
    cfg = tiny_config(tmp_path, write_corpus(tmp_path / "corpus.txt", n_docs=20))
    cfg["run"].pop("dir")  # the run folder is defaulted: the command must name it
    cfg["train"].update(max_steps=100000, save_steps=3, logging_steps=1, eval_steps=100000)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "pretrain", "recipe.yaml", "--quiet"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("runs/*/checkpoints/checkpoint-*/CHECKPOINT_COMPLETE")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no checkpoint in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    (run,) = tmp_path.glob("runs/pretrain-*")
    expected = f"interrupted; resume with: tunesmith pretrain recipe.yaml --quiet --run.dir runs/{run.name} --run.resume true"
    assert last == expected, last

    # the printed command resumes that run (stopped just after its resumed checkpoint)
    step = max(int(p.parent.name.split("-")[-1]) for p in run.glob("checkpoints/*/CHECKPOINT_COMPLETE"))
    monkeypatch.chdir(tmp_path)
    again = run_cli_here(capsys, *shlex.split(last.split("resume with: ", 1)[1])[1:],
                         "--train.max_steps", str(step + 2), "--run.sample_tokens", "0")
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [r["step"] for r in RunDir(run).read_metrics() if "loss" in r]
    assert steps[-2:] == [step + 1, step + 2] and len(steps) == len(set(steps)), steps
