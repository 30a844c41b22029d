"""The run directory: resolved config, environment record, metrics.jsonl, checkpoints, outputs.

Everything is written atomically (temp file, then rename), and only by the main process
when several processes train together. Files and folders get the modes the process umask
gives (0644/0755 under the usual umask 022), as if written directly.
"""
from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Iterator

import yaml

from .errors import UserError

TRACKED_PACKAGES = ("tunesmith", "torch", "transformers", "tokenizers", "peft", "trl",
                    "accelerate", "datasets", "bitsandbytes", "evaluate", "safetensors")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def _create_temp(parent: Path, prefix: str, folder: bool = False) -> tuple[int | None, Path]:
    """A new, uniquely named file (opened for writing: its fd) or folder in `parent`, created
    0666/0777 so the process umask applies exactly as to a file written directly
    (`tempfile.mkstemp`/`mkdtemp` would make it 0600/0700, and the rename would keep that)."""
    for _ in range(100):
        tmp = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            if folder:
                os.mkdir(tmp, 0o777)
                return None, tmp
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {parent}")


def current_umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux), else
    set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, f".{path.name}.")
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


def _widen_private_files(folder: Path) -> None:
    """Files left 0600 inside `folder` (safetensors' `save_file` writes through a private temp
    file) get the mode the umask gives a new file: a saved model is as readable as the rest of
    the run. Other modes are left as they are."""
    mode = 0o666 & ~current_umask()
    if mode == 0o600:
        return
    for f in folder.rglob("*"):
        if not f.is_symlink() and f.is_file() and (f.stat().st_mode & 0o777) == 0o600:
            os.chmod(f, mode)


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _, tmp = _create_temp(final.parent, f".{final.name}.tmp-", folder=True)
    try:
        yield tmp
        _widen_private_files(tmp)
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


def _how_it_runs() -> dict:
    """How this process trains (see core/distributed.how_it_runs: live state, not a config file)."""
    from .distributed import how_it_runs

    try:
        return how_it_runs()
    except Exception as e:  # the record never stops a run
        return {"type": "unknown", "error": f"{type(e).__name__}: {e}"}


def refresh_distributed_record(run_path: str | os.PathLike) -> None:
    """Once the Trainer's accelerator exists, rewrite environment.json's "distributed" record from
    its final state (the record written at the start reads accelerate's launch environment)."""
    path = Path(run_path) / "environment.json"
    if not path.is_file():
        return
    record = json.loads(path.read_text(encoding="utf-8"))
    fresh = _how_it_runs()
    if record.get("distributed") != fresh:
        record["distributed"] = fresh
        atomic_write_json(path, record)


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
        "distributed": _how_it_runs(),
    }
    from .modelio import RESOLVED

    if RESOLVED:  # Hub models this process resolved: repo -> revision asked, commit it resolved to
        record["models"] = {name: dict(entry) for name, entry in RESOLVED.items()}
    record.update(extra or {})
    return record


def check_writable_dir(path: str | os.PathLike, field: str = "run.dir") -> None:
    """Refuse, before anything is loaded or written, a path that cannot become a folder written
    into: an existing file, a path under a file (or a broken symlink), or one whose nearest
    existing folder is not writable (no permission, read-only file system). Creates nothing."""
    path = Path(path)
    fix = f"choose another --{field}"
    try:
        if path.exists() and not path.is_dir():
            raise UserError("is an existing file, not a folder", file=path, field=field, fix=fix)
        existing = path
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():  # dangling: it blocks mkdir
                where = "is" if existing == path else f"lies under {existing}, which is"
                raise UserError(f"{where} a broken symbolic link", file=path, field=field, fix=fix)
            existing = existing.parent
    except OSError as e:  # e.g. a parent folder this user may not enter
        raise UserError(f"cannot be reached: {e.strerror or e}", file=path, field=field, fix=fix) from None
    if not existing.is_dir():
        raise UserError(f"lies under {existing}, which is a file, not a folder", file=path, field=field, fix=fix)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot be written: {existing} is read-only for this user", file=path, field=field,
                        fix=f"{fix}, or make {existing} writable")


@dataclass
class RunDir:
    """One run's folder. Layout:
    config.yaml, environment.json, metrics.jsonl, checkpoints/checkpoint-N/, model/, results.json
    """

    path: Path
    main: bool = field(default_factory=is_main_process)
    fresh: bool = False  # overwrite without resume: make() clears the previous run's metrics and checkpoints
    # the run this process started last (`start`): the CLI names it in how to resume after Ctrl-C
    current: ClassVar[RunDir | None] = None

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
        check_writable_dir(path)
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
        checkpoints go now), then write config.yaml and environment.json. Refused first (every
        process): what this launch cannot run (core.distributed.check_stage: a checkpoint of the
        other kind to resume, QLoRA under FSDP on CPU)."""
        from .distributed import check_stage

        check_stage(config, self.checkpoints)
        self.make()
        RunDir.current = self
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
