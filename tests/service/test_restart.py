"""Restart safety: kill -9 the service while a job trains. With the job's process alive the
restarted service adopts it (no second process); with both killed (a crash of the machine) the job
resumes from its last complete checkpoint and ends with the same weights as an uninterrupted job."""
from __future__ import annotations

import json
import os
import signal
import time

from safetensors.torch import load_file
from service._service import QUICK, ServiceProcess, chat_rows, client, create_key, wait_for, write_jsonl

STEPS = 120
RECIPE = {**QUICK, "train": {**QUICK["train"], "max_steps": STEPS, "save_steps": 10, "logging_steps": 10}}


def _step_reached(store, job_id: str, step: int, timeout: float = 120) -> None:
    folder = store / "jobs" / job_id / "run" / "checkpoints"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [int(p.name.split("-")[-1]) for p in folder.glob("checkpoint-*") if (p / "CHECKPOINT_COMPLETE").exists()]
        if done and max(done) >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} after {timeout} s")


def test_kill_service_mid_job_then_resume_bit_exact(tmp_path, tiny_base):
    store = tmp_path / "store"
    key = create_key(store, "k")
    svc = ServiceProcess(store, tiny_base, workers=2).start()
    try:
        c = client(svc.url, key)
        f = c.files.create(file=write_jsonl(tmp_path / "chat.jsonl", chat_rows()).open("rb"), purpose="fine-tune")
        method = {"type": "supervised", "supervised": {"recipe": RECIPE}}
        plain = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=5, method=method)
        hurt = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=5, method=method)
        queued = c.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=5,
                                           method={"type": "supervised", "supervised": {"recipe": QUICK}})
        _step_reached(store, hurt.id, 10)
        worker = json.loads((store / "jobs" / hurt.id / "worker.json").read_text())
        svc.kill()  # 1: the service dies, the job's process trains on
        assert c.base_url  # (the client is reused after the restart)
        assert os.path.exists(f"/proc/{worker['pid']}")
        svc = ServiceProcess(store, tiny_base, workers=2).start()
        c = client(svc.url, key)
        assert c.fine_tuning.jobs.retrieve(hurt.id).status == "running"  # adopted, not started again
        assert json.loads((store / "jobs" / hurt.id / "worker.json").read_text())["pid"] == worker["pid"]
        _step_reached(store, hurt.id, 40)
        svc.kill()  # 2: the service and the job's process die together
        os.kill(worker["pid"], signal.SIGKILL)
        svc = ServiceProcess(store, tiny_base, workers=2).start()
        c = client(svc.url, key)
        jobs = {j: wait_for(c, j) for j in (plain.id, hurt.id, queued.id)}
        assert all(j.status == "succeeded" for j in jobs.values()), [j.error for j in jobs.values()]
        messages = [e.message for e in c.fine_tuning.jobs.list_events(hurt.id, limit=100).data]
        assert any("resumes from its last complete checkpoint" in m for m in messages)
        assert sum(m == "Fine-tuning job started" for m in messages) == 2  # the first start and the resume
        assert sum(m == "Fine-tuning job started" for m in
                   [e.message for e in c.fine_tuning.jobs.list_events(queued.id, limit=100).data]) == 1
    finally:
        svc.stop()
    a = load_file(store / "jobs" / plain.id / "run" / "model" / "adapter_model.safetensors")
    b = load_file(store / "jobs" / hurt.id / "run" / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    steps = [json.loads(l)["step"] for l in (store / "jobs" / hurt.id / "run" / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(l)]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS  # no step logged twice
