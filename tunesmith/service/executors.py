"""Where jobs run. An `Executor` starts a job's process (`tunesmith.service.runner JOB_DIR`: the
tunesmith CLI stage with the job's recipe), tells whether it still runs, and stops it; the
scheduler never needs to know which backend runs it.

- `LocalExecutor`: a process per job on this machine, in its own session (a crash or kill -9 of the
  service leaves it training; the restarted service adopts it through its lock, see runner.py);
- `RayExecutor`: each job a Ray task with the job's resource request (`num_cpus`, `num_gpus`) that
  runs the same runner as a child process, on whichever node of the Ray cluster has the resources.
  The store folder must be visible at the same path on every node (a shared file system).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .runner import lock_held, process_start_time


def read_exit(job_dir: Path) -> int | None:
    try:
        return int(json.loads((job_dir / "exit.json").read_text())["rc"])
    except (OSError, ValueError, KeyError):
        return None


def runner_command(job_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tunesmith.service.runner", str(job_dir)]


def runner_env() -> dict[str, str]:
    """The service's environment, with this tunesmith importable (a source checkout too)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else ""), "TQDM_DISABLE": "1"}


class Executor:
    """The interface: `start` returns a JSON-able record of the process (kept in the job's row);
    `poll` is None while it runs, else its exit code (exit.json's; negative: killed by that signal;
    -1: gone without a trace); `stop` asks it to end (SIGTERM-like) or, with `force`, kills it;
    `alive` answers for a job started by an earlier service process (restart)."""

    name = "base"

    def start(self, job_dir: Path, resources: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def poll(self, job_dir: Path, record: dict[str, Any]) -> int | None:
        raise NotImplementedError

    def stop(self, job_dir: Path, record: dict[str, Any], force: bool = False) -> None:
        raise NotImplementedError

    def alive(self, job_dir: Path, record: dict[str, Any] | None) -> bool:
        return lock_held(job_dir)

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, job_dir: Path, resources: dict[str, Any]) -> dict[str, Any]:
        with open(job_dir / "log.txt", "ab") as log:
            p = subprocess.Popen(runner_command(job_dir), stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=job_dir, env=runner_env(), start_new_session=True)
        self.procs[job_dir.name] = p
        return {"executor": self.name, "pid": p.pid, "start_time": process_start_time(p.pid)}

    def poll(self, job_dir: Path, record: dict[str, Any]) -> int | None:
        p = self.procs.get(job_dir.name)
        if p is not None:
            rc = p.poll()
            if rc is None:
                return None
            del self.procs[job_dir.name]
            found = read_exit(job_dir)
            return found if found is not None else rc
        if lock_held(job_dir):  # adopted after a restart: alive while it holds its lock
            return None
        found = read_exit(job_dir)
        return found if found is not None else -1

    def stop(self, job_dir: Path, record: dict[str, Any], force: bool = False) -> None:
        pid = (record or {}).get("pid")
        if not pid or process_start_time(pid) != record.get("start_time"):  # gone (or the pid is reused)
            return
        try:
            os.killpg(pid, signal.SIGKILL if force else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def _set_parent_death_signal() -> None:
    """The runner dies with the Ray worker that started it (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _ray_job(job_dir: str, grace: float) -> int:
    """The Ray task: run the job's runner as a child process; when the task is cancelled, stop the
    child the way the local executor does (SIGTERM, then SIGKILL after `grace` seconds)."""
    path = Path(job_dir)
    with open(path / "log.txt", "ab") as log:
        p = subprocess.Popen(runner_command(path), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=path, env=runner_env(), preexec_fn=_set_parent_death_signal)
    try:
        return p.wait()
    except KeyboardInterrupt:  # ray.cancel
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
        raise


class RayExecutor(Executor):
    """Jobs as Ray tasks (`ray.init(address)`: "auto" joins a running cluster, None starts a local one)."""

    name = "ray"

    def __init__(self, address: str | None = None, grace: float = 10.0) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": runner_env()["PYTHONPATH"]}})
        self.ray, self.grace = ray, grace
        self.remote = ray.remote(max_retries=0)(_ray_job)
        self.refs: dict[str, Any] = {}

    def start(self, job_dir: Path, resources: dict[str, Any]) -> dict[str, Any]:
        ref = self.remote.options(num_cpus=resources.get("num_cpus", 1), num_gpus=resources.get("num_gpus", 0),
                                  memory=resources.get("memory") or None).remote(str(job_dir), self.grace)
        self.refs[job_dir.name] = ref
        return {"executor": self.name, "task": ref.task_id().hex()}

    def poll(self, job_dir: Path, record: dict[str, Any]) -> int | None:
        ref = self.refs.get(job_dir.name)
        if ref is None:
            if lock_held(job_dir):
                return None
            found = read_exit(job_dir)
            return found if found is not None else -1
        ready, _ = self.ray.wait([ref], timeout=0)
        if not ready:
            return None
        del self.refs[job_dir.name]
        try:
            rc = self.ray.get(ref)
        except Exception:  # noqa: BLE001 - cancelled, or the worker died: the runner's record says how it ended
            rc = -9
        found = read_exit(job_dir)
        return found if found is not None else rc

    def stop(self, job_dir: Path, record: dict[str, Any], force: bool = False) -> None:
        ref = self.refs.get(job_dir.name)
        if ref is not None:
            self.ray.cancel(ref, force=force)

    def alive(self, job_dir: Path, record: dict[str, Any] | None) -> bool:
        # tasks of a driver that died are killed by Ray (and the runner with them): wait for that
        deadline = time.monotonic() + 15
        while lock_held(job_dir):
            if time.monotonic() > deadline:
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(name: str, address: str | None = None, grace: float = 10.0) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, grace)
    raise ValueError(name)
