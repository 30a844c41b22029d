"""train.report_to mlflow / wandb: the Trainer's own integrations log every step into one
tracking run, which then gets the run's config, environment, final metrics and report and is
ended; stores default to the run folder. Real mlflow and wandb, tiny runs."""
from __future__ import annotations

import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest
import yaml

import tunesmith as ts
from alignment._sft_fixtures import pretrained
from helpers import assert_user_error, run_cli_here, tiny_config, write_corpus
from tunesmith.core.errors import UserError
from tunesmith.report.trackers import report_callbacks

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
TRACKER_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_NESTED_RUN", "MLFLOW_TAGS",
               "MLFLOW_ALLOW_FILE_STORE", "WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_NAME")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No tracker settings from the machine; W&B's own caches in tmp_path, not in $HOME."""
    for name in TRACKER_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return monkeypatch


def _pretrain(tmp_path: Path, report_to: list[str]):
    corpus = write_corpus(tmp_path / "c.txt", 60)
    cfg = tiny_config(tmp_path, corpus, train={"max_steps": 3, "logging_steps": 1, "report_to": report_to},
                      run={"sample_tokens": 0})
    return ts.pretrain(cfg)


def _jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _mlflow_run(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert len(runs) == 1, runs
    return client, runs[0]


def test_unknown_logger_and_missing_packages_are_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match='unknown logger "comet"') as e:
        report_callbacks(["comet"], tmp_path)
    assert 'field "train.report_to"' in str(e.value) and "tensorboard, mlflow, wandb" in str(e.value)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("mlflow", "wandb") else real(n, *a))
    for name in ("mlflow", "wandb"):
        with pytest.raises(UserError, match=f"pip install {name}") as e:
            report_callbacks(["tensorboard", name], tmp_path)
        assert "\n" not in str(e.value)


def test_unknown_logger_exits_2_with_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert_user_error(run_cli_here(capsys, "pretrain", "--run.dir", str(run), "--train.report_to", "comet"),
                      "train.report_to", "'tensorboard', 'mlflow' or 'wandb'", "comet")
    assert not run.exists()


@needs_mlflow
def test_mlflow_gets_every_step_then_config_metrics_and_report(tmp_path, clean_env):
    import mlflow

    uri = (tmp_path / "store").as_uri()
    clean_env.setenv("MLFLOW_TRACKING_URI", uri)
    clean_env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the file store behind this switch
    result = _pretrain(tmp_path, ["mlflow"])
    client, run = _mlflow_run(uri)
    assert run.info.status == "FINISHED" and run.info.run_name == "run" and mlflow.active_run() is None
    params = run.data.params
    assert params["train.lr"] == "0.003" and params["model.family"] == "llama" and params["train.report_to"] == '["mlflow"]'
    assert params["env.versions.transformers"] and params["learning_rate"] == "0.003"  # the Trainer's own too
    logged = [r for r in _jsonl(result.run_dir) if "loss" in r]
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [r["step"] for r in logged] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert run.data.metrics["final.eval_loss"] == pytest.approx(result.metrics["eval_loss"], rel=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "environment.json", "results.json", "report.md", "report.html", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} >= {"plots/loss.png"}
    local = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "dl")))
    assert yaml.safe_load(local.read_text())["train"]["report_to"] == ["mlflow"]
    assert mlflow.get_tracking_uri() == uri  # the user's store is left as set


@needs_mlflow
def test_sft_logs_to_a_default_store_in_the_run_dir(tmp_path, tmp_path_factory, clean_env):
    """An alignment stage, nothing configured: the store is inside the run folder (SQLite with
    full mlflow, else the file store), and the process is left as it was."""
    import os

    import mlflow

    tiny = pretrained("tiny", tmp_path_factory.getbasetemp())
    train = {"dtype": "fp32", "warmup_steps": 0, "logging_steps": 1, "save_steps": 10_000, "eval_steps": 10_000,
             "max_steps": 2, "batch_size": 4, "lr": 1e-2, "report_to": ["mlflow"]}
    result = ts.sft(model={"path": str(tiny)}, tasks={"names": ["upper"], "train_rows": 16, "eval_rows": 2},
                    train=train, sft={"max_length": 64}, adapter={"method": "lora", "rank": 4},
                    run={"dir": str(tmp_path / "run"), "sample_tokens": 0})
    run_dir = result.run_dir.resolve()
    if (run_dir / "mlflow.db").is_file():
        uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    else:
        assert (run_dir / "mlruns").is_dir()
        uri = (run_dir / "mlruns").as_uri()
    client, run = _mlflow_run(uri)
    assert run.info.status == "FINISHED" and run.data.params["adapter.method"] == "lora"
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    metrics = run.data.metrics
    assert metrics["final.after.exact_match.upper"] == result.metrics["after/exact_match/upper"]
    assert "final.after.exact_match" in metrics
    assert "report.html" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.active_run() is None  # the next run picks its own


def _wandb_records(path: Path) -> list:
    """The records of a `.wandb` file (W&B's LevelDB-style log: 32 KiB blocks of checksum,
    length, type, payload; a record may span blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    i, chunk, records = 7, b"", []
    while i + 7 <= len(data):
        room = 32768 - i % 32768
        _, length, kind = struct.unpack("<IHB", data[i:i + 7]) if room >= 7 else (0, 0, 0)
        if kind == 0:  # the padding at the end of a block
            i += room
            continue
        chunk += data[i + 7:i + 7 + length]
        i += 7 + length
        if kind in (1, 4):  # full, last
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def _items(items) -> dict:
    return {(it.key or "/".join(it.nested_key)): json.loads(it.value_json) for it in items}


@needs_wandb
def test_wandb_runs_offline_in_the_run_dir(tmp_path, clean_env):
    import wandb

    result = _pretrain(tmp_path, ["wandb"])
    [folder] = (result.run_dir / "wandb").glob("offline-run-*")
    [log] = folder.glob("*.wandb")
    for _ in range(50):  # W&B's service process writes the offline log; under load it can trail finish()
        records = _wandb_records(log)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds:
            break
        time.sleep(0.2)
    assert "exit" in kinds and wandb.run is None  # finished
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "run" and run.project == "tunesmith"
    history = [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    logged = [r for r in _jsonl(result.run_dir) if "loss" in r]
    steps = [h for h in history if "train/loss" in h]
    assert [h["train/global_step"] for h in steps] == [r["step"] for r in logged] == [1, 2, 3]
    assert [h["train/loss"] for h in steps] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    config = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update(_items(r.config.update))
    assert config["train.lr"] == 0.003 and config["train.report_to"] == ["wandb"] and config["learning_rate"] == 0.003
    assert config["env.versions.transformers"]
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    assert summary["final.eval_loss"] == pytest.approx(result.metrics["eval_loss"], rel=1e-6)
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"tunesmith/config.yaml", "tunesmith/report.html", "tunesmith/report.md", "tunesmith/plots/loss.png"} <= saved
    assert (folder / "files" / "tunesmith" / "report.html").read_text() == (result.run_dir / "report.html").read_text()


@needs_mlflow
def test_a_stage_failing_mid_training_ends_its_mlflow_run_as_failed(tmp_path, clean_env, monkeypatch):
    """NaN at step 2 with `on_nonfinite: stop`: the stage raises, and its MLflow run is FAILED and
    no longer active right then (not left open until the next stage or exit)."""
    import mlflow

    from tunesmith.core.errors import TrainingStopped
    from tunesmith.pretraining.trainer import PretrainTrainer

    original = PretrainTrainer.compute_loss

    def compute_loss(self, model, inputs, *a, **kw):
        loss = original(self, model, inputs, *a, **kw)
        return loss * float("nan") if model.training and self.state.global_step + 1 == 2 else loss
    monkeypatch.setattr(PretrainTrainer, "compute_loss", compute_loss)
    uri = (tmp_path / "store").as_uri()
    clean_env.setenv("MLFLOW_TRACKING_URI", uri)
    clean_env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    clean_env.setenv("MLFLOW_EXPERIMENT_NAME", "failing")  # not the experiment an earlier test left active
    with pytest.raises(TrainingStopped, match="step 2"):
        _pretrain(tmp_path, ["mlflow"])
    assert mlflow.active_run() is None
    _, run = _mlflow_run(uri)
    assert run.info.status == "FAILED"
    assert [m.step for m in _mlflow_run(uri)[0].get_metric_history(run.info.run_id, "loss")] == [1]
