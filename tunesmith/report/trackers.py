"""Live loggers for a stage's Trainer (`train.report_to`): TensorBoard, MLflow, Weights & Biases.

A stage passes its `report_to` list here and adds the callbacks it gets back to the Trainer
(keeping `TrainingArguments.report_to=[]`, so the Trainer adds no logger of its own that would
write under the checkpoints folder). The callbacks are the Trainer's own integrations:

- tensorboard: event files in `RUN_DIR/tensorboard/` (`tensorboard --logdir runs/nano/tensorboard`).
- mlflow: one MLflow run named after the run folder. The user's MLFLOW_TRACKING_URI,
  MLFLOW_EXPERIMENT_NAME, MLFLOW_RUN_ID, MLFLOW_NESTED_RUN, MLFLOW_TAGS hold; with no tracking URI
  set the store is inside the run folder: `sqlite:///RUN_DIR/mlflow.db` (artifacts in
  `RUN_DIR/mlartifacts`) when SQLAlchemy and Alembic are installed, else the file store
  `RUN_DIR/mlruns` (mlflow 3 keeps it behind MLFLOW_ALLOW_FILE_STORE=true, which is then set).
- wandb: one W&B run named after the run folder, project WANDB_PROJECT (default "tunesmith"),
  its files in `RUN_DIR/wandb/` unless WANDB_DIR is set, offline (`wandb sync RUN_DIR/wandb/offline-run-*`
  later) unless WANDB_MODE or WANDB_API_KEY is set.

The tracking runs stay open after training: `finish_trackers` (the lifecycle's `finish_run`, once
report.html is written) logs the run's config.yaml (flattened: `train.lr`), environment.json
(`env.versions.torch`), results.json metrics (`final.<name>`) and the run files (config.yaml,
environment.json, results.json, metrics.jsonl, report.md, report.html, plots/: MLflow artifacts; W&B
run files under `tunesmith/`) into the same run, then ends it (a run the user had already started
is left open).

trainer = Trainer(..., callbacks=[*callbacks, *report_callbacks(["mlflow"], run.path)])
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Literal

from ..core.errors import UserError

ReportTarget = Literal["tensorboard", "mlflow", "wandb"]
SUPPORTED = ("tensorboard", "mlflow", "wandb")
TENSORBOARD_DIR = "tensorboard"
WANDB_PROJECT = "tunesmith"
# the run files a tracker receives at the end (when present), and the report's plot folder
RUN_FILES = ("config.yaml", "environment.json", "results.json", "metrics.jsonl", "report.md", "report.html")
PLOTS = "plots"
WANDB_FILES = "tunesmith"  # the folder of those files among a W&B run's files

# tracker -> resolved run folder -> (tracking run id, whether tunesmith started it and so ends it)
_OPEN: dict[str, dict[str, tuple[str, bool]]] = {"mlflow": {}, "wandb": {}}
_DEFAULT_MLFLOW_URI: list[str] = []  # the run-folder tracking URI tunesmith set last (not the user's)


def report_callbacks(report_to: list[str], run_dir: str | os.PathLike,
                     field: str = "train.report_to") -> list:
    """Trainer callbacks for the requested loggers; an unknown logger or a missing package is a
    UserError (naming the supported loggers / the pip package to install).

    >>> report_callbacks([], "runs/x")
    []
    """
    targets = list(dict.fromkeys(report_to))
    for target in targets:  # every name checked before any logger is set up
        if target not in SUPPORTED:
            raise UserError(f'unknown logger "{target}"', field=field, fix=f"supported: {', '.join(SUPPORTED)}")
        if importlib.util.find_spec(target) is None:
            raise UserError(f"report_to {target} needs the {target} package", field=field,
                            fix=f"pip install {target}")
    callbacks = []
    for target in targets:
        if target == "tensorboard":
            from transformers.integrations import TensorBoardCallback

            callback = TensorBoardCallback()
            # its writer is (re)opened lazily in logging_dir, also for evaluations after training
            callback.logging_dir = str(Path(run_dir) / TENSORBOARD_DIR)
        elif target == "mlflow":
            callback = _mlflow_callback(run_dir)
        else:
            callback = _wandb_callback(run_dir)
        callbacks.append(callback)
    return callbacks


def configured_trackers(run_dir: str | os.PathLike) -> list[str]:
    """The trackers among `train.report_to` in the run's config.yaml that keep a tracking run
    (mlflow, wandb); [] without a config or a train section (an eval run)."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return []
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    train = cfg.get("train") if isinstance(cfg, dict) else None
    report_to = (train.get("report_to") if isinstance(train, dict) else None) or []
    return [t for t in dict.fromkeys(report_to) if t in ("mlflow", "wandb")]


def finish_trackers(run_dir: str | os.PathLike, trackers: list[str], step: int | None = None) -> dict:
    """Log the finished run (config, environment, final metrics, report files) into each tracker's
    run, the one its Trainer callback used, and end it. Main process only, after the report is
    written. Returns {tracker: tracking run id}."""
    run_dir = Path(run_dir)
    done = {}
    for tracker in trackers:
        done[tracker] = (_finish_mlflow if tracker == "mlflow" else _finish_wandb)(run_dir, step)
    return done


# --- what every tracker logs ---------------------------------------------------------------

def run_params(run_dir: Path) -> dict[str, Any]:
    """config.yaml flattened (`train.lr`) and environment.json under `env.` (`env.versions.torch`)."""
    import yaml

    params: dict[str, Any] = {}
    config = run_dir / "config.yaml"
    if config.is_file():
        params.update(_flatten(yaml.safe_load(config.read_text(encoding="utf-8")) or {}))
    environment = run_dir / "environment.json"
    if environment.is_file():
        env = json.loads(environment.read_text(encoding="utf-8"))
        env.pop("argv", None)  # a command line, not a setting
        params.update(_flatten(env, "env."))
    return params


def final_metrics(run_dir: Path) -> dict[str, float]:
    """results.json's numeric metrics as `final.<name>`, `/` in a name as `.` (`final.before.exact_match`
    beside `final.before.exact_match.upper`: MLflow's file store keeps `a/b` as a file in a folder `a`,
    so `a` and `a/b` could not both be kept)."""
    results = run_dir / "results.json"
    if not results.is_file():
        return {}
    metrics = json.loads(results.read_text(encoding="utf-8")).get("metrics") or {}
    return {"final." + k.replace("/", "."): float(v) for k, v in _flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_files(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in RUN_FILES if (run_dir / name).is_file()]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _key(run_dir: str | os.PathLike) -> str:
    return str(Path(run_dir).resolve())


# --- MLflow ---------------------------------------------------------------------------------

def _mlflow_callback(run_dir: str | os.PathLike):
    from transformers.integrations import MLflowCallback

    class RunMLflowCallback(MLflowCallback):
        """The Trainer's MLflow integration, its run opened in the run folder's store (unless the
        user set one) and named after the run; left open at the end of training for
        `finish_trackers` (evaluations after training log into it too)."""

        def __init__(self, run_dir: str | os.PathLike):
            super().__init__()
            self.run_dir = Path(run_dir)

        def setup(self, args, state, model):
            owned = False
            if state.is_world_process_zero:
                owned = _open_mlflow_run(self._ml_flow, self.run_dir)
            super().setup(args, state, model)
            if state.is_world_process_zero:
                owned = owned or self._auto_end_run  # MLFLOW_RUN_ID / MLFLOW_NESTED_RUN: started by setup
                self._auto_end_run = False           # finish_trackers ends it, not on_train_end/__del__
                _OPEN["mlflow"][_key(self.run_dir)] = (self._ml_flow.active_run().info.run_id, owned)

        def on_train_end(self, args, state, control, **kwargs):
            pass

    return RunMLflowCallback(run_dir)


def _open_mlflow_run(mlflow, run_dir: Path) -> bool:
    """Make sure an MLflow run is active for `run_dir`; True when this started it."""
    _end_stale("mlflow", run_dir)
    if not mlflow.is_tracking_uri_set() or mlflow.get_tracking_uri() in _DEFAULT_MLFLOW_URI:
        uri = default_mlflow_uri(run_dir)
        mlflow.set_tracking_uri(uri)
        _DEFAULT_MLFLOW_URI[:] = [uri]
    if (mlflow.active_run() is not None or os.getenv("MLFLOW_RUN_ID")
            or os.getenv("MLFLOW_NESTED_RUN", "").upper() in ("1", "TRUE", "YES", "ON")):
        return False  # the user's run, or one the Trainer callback starts as the user asked
    experiment = os.getenv("MLFLOW_EXPERIMENT_NAME")
    if mlflow.get_tracking_uri().startswith("sqlite:") and mlflow.get_tracking_uri() in _DEFAULT_MLFLOW_URI:
        # a fresh database in the run folder: its artifacts beside it, not in ./mlruns
        experiment = experiment or WANDB_PROJECT
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=(run_dir / "mlartifacts").resolve().as_uri())
    if experiment:
        mlflow.set_experiment(experiment)
    mlflow.start_run(run_name=run_dir.name)
    return True


def default_mlflow_uri(run_dir: str | os.PathLike) -> str:
    """The tracking store inside the run folder when the user set none: SQLite when SQLAlchemy and
    Alembic are installed (full `mlflow`), else the file store (mlflow 3 refuses it unless
    MLFLOW_ALLOW_FILE_STORE is true: set here, the store being a private one in the run folder)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if all(importlib.util.find_spec(m) is not None for m in ("sqlalchemy", "alembic")):
        return f"sqlite:///{run_dir / 'mlflow.db'}"
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (run_dir / "mlruns").as_uri()


def _finish_mlflow(run_dir: Path, step: int | None) -> str:
    import mlflow
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    entry = _OPEN["mlflow"].pop(_key(run_dir), None)
    if entry is None:  # no training step ran the callback (nothing to train): open the run now
        owned = _open_mlflow_run(mlflow, run_dir)
        entry = (mlflow.active_run().info.run_id, owned)
    run_id, owned = entry
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:  # ended meanwhile: reopen it to log, then end it
        mlflow.start_run(run_id=run_id, nested=active is not None)
        owned = True
    status = "FAILED"
    try:
        logged = mlflow.get_run(run_id).data.params
        params = {k: _param_value(v, MAX_PARAM_VAL_LENGTH) for k, v in run_params(run_dir).items()
                  if k not in logged}  # a resumed run's params are already there (and immutable)
        items = list(params.items())
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            mlflow.log_params(dict(items[i:i + MAX_PARAMS_TAGS_PER_BATCH]))
        metrics = {re.sub(r"[^0-9A-Za-z_\-. :/]", "_", k): v for k, v in final_metrics(run_dir).items()}
        if metrics:
            mlflow.log_metrics(metrics, step=step or 0)
        for path in run_files(run_dir):
            mlflow.log_artifact(str(path))
        if (run_dir / PLOTS).is_dir():
            mlflow.log_artifacts(str(run_dir / PLOTS), artifact_path=PLOTS)
        status = "FINISHED"
    finally:
        if owned:
            mlflow.end_run(status)
        _release_default_store(mlflow)
    return run_id


def _release_default_store(mlflow) -> None:
    """Once no run is active, let go of the run-folder store tunesmith set: the next run (or
    stage) picks its own folder again."""
    if mlflow.get_tracking_uri() in _DEFAULT_MLFLOW_URI and mlflow.active_run() is None:
        mlflow.set_tracking_uri(None)
        _DEFAULT_MLFLOW_URI.clear()


def _param_value(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- Weights & Biases -----------------------------------------------------------------------

def _wandb_callback(run_dir: str | os.PathLike):
    from transformers.integrations import WandbCallback

    class RunWandbCallback(WandbCallback):
        """The Trainer's W&B integration, its run opened in the run folder (offline unless the user
        set WANDB_MODE or WANDB_API_KEY) and named after the run; `finish_trackers` ends it."""

        def __init__(self, run_dir: str | os.PathLike):
            super().__init__()
            self.run_dir = Path(run_dir)

        def setup(self, args, state, model, **kwargs):
            owned = False
            if state.is_world_process_zero:
                owned = _open_wandb_run(self._wandb, self.run_dir)
            super().setup(args, state, model, **kwargs)
            if state.is_world_process_zero:
                _OPEN["wandb"][_key(self.run_dir)] = (self._wandb.run.id, owned)

    return RunWandbCallback(run_dir)


def _open_wandb_run(wandb, run_dir: Path) -> bool:
    """Make sure a W&B run is active for `run_dir`; True when this started it."""
    _end_stale("wandb", run_dir)
    if wandb.run is not None:
        return False
    offline = not (os.getenv("WANDB_MODE") or os.getenv("WANDB_API_KEY"))
    run_dir.mkdir(parents=True, exist_ok=True)
    wandb.init(project=os.getenv("WANDB_PROJECT") or WANDB_PROJECT, name=os.getenv("WANDB_NAME") or run_dir.name,
               dir=None if os.getenv("WANDB_DIR") else str(run_dir), mode="offline" if offline else None)
    return True


def _finish_wandb(run_dir: Path, step: int | None) -> str:
    import wandb

    entry = _OPEN["wandb"].pop(_key(run_dir), None)
    if entry is None or wandb.run is None or wandb.run.id != entry[0]:
        entry = (None, _open_wandb_run(wandb, run_dir))
    run, owned = wandb.run, entry[1]
    ok = False
    try:
        run.config.update(run_params(run_dir), allow_val_change=True)
        run.summary.update(final_metrics(run_dir))
        # copies (so the run folder may move) in the run's files under tunesmith/, apart from
        # W&B's own config.yaml and wandb-summary.json
        files = Path(run.dir)
        for path in [*run_files(run_dir), *sorted((run_dir / PLOTS).glob("*.png"))]:
            dest = files / WANDB_FILES / path.relative_to(run_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            wandb.save(str(dest), base_path=str(files), policy="now")
        ok = True
    finally:
        if owned:
            run.finish(exit_code=0 if ok else 1)
    return run.id


def fail_trackers(run_dir: str | os.PathLike) -> None:
    """A stage that fails after its trackers opened: the MLflow/W&B runs tunesmith started for
    `run_dir` end now as failed (and the run-folder MLflow store is let go), not at the next
    stage or at exit."""
    key = _key(run_dir)
    for tracker in _OPEN:
        _end_failed(tracker, lambda other: other == key)
    if _DEFAULT_MLFLOW_URI and importlib.util.find_spec("mlflow") is not None:
        import mlflow

        _release_default_store(mlflow)


def _end_stale(tracker: str, run_dir: Path) -> None:
    """A tracking run tunesmith opened for another run folder and never finished (that stage
    failed) is ended as failed, so this run does not log into it."""
    key = _key(run_dir)
    _end_failed(tracker, lambda other: other != key)


def _end_failed(tracker: str, which: Callable[[str], bool]) -> None:
    """End as failed the tracking runs tunesmith opened for the run folders `which` selects."""
    for other, (run_id, owned) in list(_OPEN[tracker].items()):
        if not which(other):
            continue
        del _OPEN[tracker][other]
        if not owned:
            continue
        if tracker == "mlflow":
            import mlflow

            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                mlflow.end_run("FAILED")
        else:
            import wandb

            if wandb.run is not None and wandb.run.id == run_id:
                wandb.run.finish(exit_code=1)
