"""Helpers for the service tests: a `tunesmith service` process, API keys, data files, polling."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# one thread per process: the same numbers in every run (the restart test compares weights bit for bit)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
# a few steps of the tiny model: checkpoints every 2 steps so resume is exercised
QUICK = {"train": {"max_steps": 4, "save_steps": 2, "logging_steps": 1, "batch_size": 2, "warmup_steps": 0,
                   "dtype": "fp32"},
         "tasks": {"eval_rows": 1}}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_key(store: Path, name: str, *flags: str) -> str:
    out = subprocess.run([sys.executable, "-m", "tunesmith.cli", "service", "keys", "create", "--store", str(store),
                          "--name", name, *flags], cwd=REPO, env=ENV, capture_output=True, text=True, check=True)
    return out.stdout.strip()


class ServiceProcess:
    """`tunesmith service` as a user starts it, on a free port."""

    def __init__(self, store: Path, base: Path, workers: int = 2, grace: float = 3.0, extra: list[str] = ()):
        self.store, self.base, self.workers, self.grace, self.extra = store, base, workers, grace, list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        import httpx

        self.log = open(self.store / f"service-{time.time():.0f}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tunesmith.cli", "--quiet", "service", "--store", str(self.store), "--model",
             f"tiny={self.base}", "--port", str(self.port), "--workers", str(self.workers), "--grace", str(self.grace),
             *self.extra], cwd=REPO, env=ENV, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited: {(self.store / self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the service did not start")

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def client(url: str, key: str):
    import openai

    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def chat_rows(n: int = 16) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"What is {i} + {i + 1}?"},
                          {"role": "assistant", "content": f"{2 * i + 1}"}]} for i in range(n)]


def dpo_rows(n: int = 16) -> list[dict]:
    return [{"input": {"messages": [{"role": "user", "content": f"Say {i} in capitals: tree{i}"}]},
             "preferred_output": [{"role": "assistant", "content": f"TREE{i}"}],
             "non_preferred_output": [{"role": "assistant", "content": f"tree{i}"}]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def wait_for(client, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")
