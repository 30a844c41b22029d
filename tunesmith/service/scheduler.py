"""The workers: a thread that starts queued jobs (FIFO, at most `workers` at a time and at most each
key's limit of running jobs), watches them, stops cancelled ones (SIGTERM, then SIGKILL after the
grace period) and records how each ended.

Restart safety (`recover`, once at start-up): a job the database says is running is
- still running (its runner holds the job's lock): adopted, watched to its end, never started twice;
- finished while no service watched (its exit.json): recorded as it ended;
- gone (the service and the job were killed together): queued again with `resume`, and its next
  start continues the run from its last complete checkpoint (`--run.resume true`).
A job is claimed with one conditional UPDATE (queued -> running), so it cannot start twice, and the
runner's lock refuses a second process of the same job even so.
"""
from __future__ import annotations

import json
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from .executors import Executor, read_exit
from .methods import model_name
from .runner import ALREADY_RUNNING
from .schema import Job
from .store import Store, new_id


def last_error_line(job_dir: Path) -> str:
    """The log's last non-empty line (the CLI's one-line error, or a traceback's last line)."""
    try:
        with open(job_dir / "log.txt", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith("interrupted")]
    return lines[-1][:2000] if lines else ""


class Scheduler:
    def __init__(self, store: Store, executor: Executor, *, workers: int = 1, max_running_per_key: int | None = None,
                 grace: float = 10.0, interval: float = 0.2):
        self.store, self.executor = store, executor
        self.workers, self.max_running_per_key, self.grace, self.interval = workers, max_running_per_key, grace, interval
        self.me = new_id("svc")
        self.active: dict[str, dict[str, Any]] = {}   # job id -> {"record", "term_at"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; running jobs keep running (a restarted service adopts them)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the scheduler
                traceback.print_exc()
            self._wake.wait(self.interval)
            self._wake.clear()

    def recover(self) -> None:
        for job in self.store.jobs_with_status("running"):
            job_dir = self.store.job_dir(job.id)
            if self.executor.alive(job_dir, job.runner):
                self.active[job.id] = {"record": job.runner or {}, "term_at": None}
                self.store.set_job(job.id, claimed_by=self.me)
                self.store.add_event(job.id, "The service restarted; the job's process still runs and is watched again")
            elif (rc := read_exit(job_dir)) is not None:
                self.finish(job, rc)
            elif job.cancel_requested:
                self.store.transition(job.id, "cancelled", "Job cancelled", expect=("running",),
                                      finished_at=int(time.time()))
            else:
                self.store.transition(job.id, "queued", "The service restarted while the job ran; it resumes from "
                                      "its last complete checkpoint", expect=("running",), resume=True, runner=None,
                                      claimed_by=None)

    # -- one round -----------------------------------------------------------------------------
    def tick(self) -> None:
        running = {j.id: j for j in self.store.jobs_with_status("running")}
        for job_id in list(self.active):
            job = running.get(job_id)
            entry = self.active[job_id]
            job_dir = self.store.job_dir(job_id)
            rc = self.executor.poll(job_dir, entry["record"])
            if rc is not None:
                del self.active[job_id]
                if job is not None:
                    self.finish(job, rc)
                continue
            if job is not None and job.cancel_requested:
                now = time.monotonic()
                if entry["term_at"] is None:
                    self.executor.stop(job_dir, entry["record"])
                    entry["term_at"] = now
                elif now - entry["term_at"] > self.grace and not entry.get("killed"):
                    self.executor.stop(job_dir, entry["record"], force=True)
                    entry["killed"] = True
        self._claim(running)

    def _claim(self, running: dict[str, Job]) -> None:
        if len(self.active) >= self.workers:
            return
        per_key: dict[str, int] = {}
        for job in running.values():
            per_key[job.owner] = per_key.get(job.owner, 0) + 1
        limits = {k.id: k.max_running for k in self.store.keys()}
        for job in self.store.jobs_with_status("queued"):
            if len(self.active) >= self.workers:
                return
            limit = limits.get(job.owner) or self.max_running_per_key
            if limit is not None and per_key.get(job.owner, 0) >= limit:
                continue
            if self.store.claim(job.id, self.me):
                per_key[job.owner] = per_key.get(job.owner, 0) + 1
                self.launch(job)

    def launch(self, job: Job) -> None:
        job_dir = self.store.job_dir(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(job.recipe["run"]["dir"])
        recipe = job_dir / "recipe.yaml"
        recipe.write_text(yaml.safe_dump(job.recipe, sort_keys=False))
        argv = ["--quiet", job.stage, str(recipe)]
        if run_dir.exists() and any(run_dir.iterdir()):
            argv += ["--run.resume", "true"]
        (job_dir / "job.json").write_text(json.dumps({"argv": argv}))
        try:
            record = self.executor.start(job_dir, job.resources)
        except Exception as e:  # noqa: BLE001 - the executor could not start it: the job fails, the service goes on
            self.store.transition(job.id, "failed", f"The job could not start: {e}", expect=("running",), level="error",
                                  finished_at=int(time.time()),
                                  error={"code": "start_failed", "message": str(e), "param": None})
            return
        self.active[job.id] = {"record": record, "term_at": None}
        self.store.set_job(job.id, runner=record)
        if "--run.resume" in argv:
            self.store.add_event(job.id, "Resuming from the last complete checkpoint")

    def finish(self, job: Job, rc: int) -> None:
        """Record how the job's process ended (one transaction)."""
        job_dir = self.store.job_dir(job.id)
        now = int(time.time())
        results_file = Path(job.recipe["run"]["dir"]) / "results.json"
        if job.cancel_requested:
            self.store.transition(job.id, "cancelled", "Job cancelled", expect=("running",), finished_at=now)
        elif rc == 0 and results_file.is_file():
            results = json.loads(results_file.read_text())
            tokens = (results.get("metrics") or {}).get("train_tokens")
            name = model_name(job.model, job.suffix, job.id)
            self.store.transition(job.id, "succeeded", f"The job has successfully completed: {name}",
                                  expect=("running",), finished_at=now, fine_tuned_model=name,
                                  model_path=results.get("model_path"),
                                  trained_tokens=int(tokens) if isinstance(tokens, (int, float)) else None)
        elif rc == ALREADY_RUNNING:  # another process of this job holds its lock: watch that one instead
            self.active[job.id] = {"record": job.runner or {}, "term_at": None}
        else:
            line = last_error_line(job_dir)
            how = f"killed by signal {-rc}" if rc < -1 else ("gone without an exit record" if rc == -1
                                                             else f"exit code {rc}")
            message = f"{line} ({how})" if line else f"the job's process ended: {how}"
            self.store.transition(job.id, "failed", f"The job failed: {message}", expect=("running",), level="error",
                                  finished_at=now, error={"code": "job_failed", "message": message, "param": None})
