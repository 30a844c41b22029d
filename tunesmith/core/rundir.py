"""The run directory: resolved config, environment record, metrics.jsonl, checkpoints, outputs.

Everything is written atomically (temp file, then rename), and only by the main process
when several processes train together.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import UserError

TRACKED_PACKAGES = ("tunesmith", "torch", "transformers", "tokenizers", "peft", "trl",
                    "accelerate", "datasets", "bitsandbytes", "evaluate", "safetensors")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_record(seed: int | None = None, extra: dict | None = None) -> dict:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv,
        "seed": seed,
        "git_revision": git_revision(),
        "versions": versions,
    }
    record.update(extra or {})
    return record


@dataclass
class RunDir:
    """One run's folder. Layout:
    config.yaml, environment.json, metrics.jsonl, checkpoints/checkpoint-N/, model/, results.json
    """

    path: Path
    main: bool = field(default_factory=is_main_process)
    fresh: bool = False  # overwrite without resume: make() clears the previous run's metrics and checkpoints

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @classmethod
    def create(cls, path: str | os.PathLike, resume: bool = False, overwrite: bool = False,
               make: bool = True) -> "RunDir":
        """Check that `path` may be used (refuse to clobber a run) and, with `make`, create it.
        Stages check early (make=False) and create only once every input has been validated,
        so bad input leaves nothing behind."""
        path = Path(path)
        run = cls(path)
        if not run.main:  # under several processes only the main one checks and writes
            return run
        if path.exists() and any(path.iterdir()) and not (resume or overwrite):
            raise UserError("run directory already exists and is not empty", file=path,
                            fix="pass --resume to continue it, or choose another --run.dir")
        if resume and not path.exists():
            raise UserError("cannot resume: run directory does not exist", file=path)
        run.fresh = overwrite and not resume
        return run.make() if make else run

    def make(self) -> "RunDir":
        """Create the folder; an overwritten run starts without the old run's metrics.jsonl and
        checkpoints (a later --resume must not pick those up), other files are left alone."""
        if self.main:
            self.path.mkdir(parents=True, exist_ok=True)
            if self.fresh:
                self.metrics_file.unlink(missing_ok=True)
                shutil.rmtree(self.checkpoints, ignore_errors=True)
                self.fresh = False
        return self

    def start(self, config: Any, seed: int | None = None, **environment: Any) -> "RunDir":
        """The run begins, its inputs all valid: make the folder (an overwritten run's metrics and
        checkpoints go now), then write config.yaml and environment.json."""
        self.make()
        self.write_config(config)
        self.write_environment(seed, **environment)
        return self

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: Any) -> None:
        if self.main:
            data = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
            atomic_write_text(self.path / "config.yaml", yaml.safe_dump(data, sort_keys=False))

    def write_environment(self, seed: int | None = None, **extra: Any) -> None:
        if self.main:
            atomic_write_json(self.path / "environment.json", environment_record(seed, extra))

    def write_json(self, name: str, obj: Any) -> None:
        if self.main:
            atomic_write_json(self.path / name, obj)

    def log_metrics(self, record: dict) -> None:
        """Append one JSON line; a line is written whole with a single write call."""
        if self.main:
            self.path.mkdir(parents=True, exist_ok=True)
            line = json.dumps(record, default=float) + "\n"
            with open(self.metrics_file, "a", encoding="utf-8") as f:
                f.write(line)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(l) for l in self.metrics_file.read_text().splitlines() if l.strip()]

    def truncate_metrics_after(self, step: int) -> None:
        """On resume, drop metric lines logged after the checkpoint we go back to."""
        if self.main and self.metrics_file.exists():
            keep = [r for r in self.read_metrics() if r.get("step", 0) <= step]
            atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in keep))


def default_run_dir(stage: str, root: str | os.PathLike = "runs") -> Path:
    """`runs/<stage>-<YYYYmmdd-HHMMSS>`, with `-2`, `-3`, ... when a run of the same second has it."""
    base = Path(root) / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path
