"""The Ray executor: jobs as Ray tasks on a local Ray instance (`ray.init()`), through the same
scheduler and store as the local process pool: one job trains to the end, one is cancelled.
Run it with `TUNESMITH_TEST_RAY=1 pytest tests/service/test_ray.py` (named in the README)."""
from __future__ import annotations

import os
import time

import pytest
from service._service import ENV, QUICK, chat_rows, write_jsonl

# about 70 s here (Ray's start-up and two jobs): outside `make test`'s budget, run on request
pytestmark = pytest.mark.skipif(os.environ.get("TUNESMITH_TEST_RAY") != "1",
                                reason="the Ray backend test runs with TUNESMITH_TEST_RAY=1 (about 70 s)")


def _wait(store, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(None, job_id)
        if job.status in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{job_id} still {job.status}")


def test_ray_executor_runs_and_cancels_jobs(tmp_path, tiny_base, monkeypatch):
    pytest.importorskip("ray")
    for k in ("OMP_NUM_THREADS", "PYTHONPATH"):
        monkeypatch.setenv(k, ENV[k])
    from tunesmith.service.executors import RayExecutor
    from tunesmith.service.files import check_file
    from tunesmith.service.methods import build_recipe
    from tunesmith.service.scheduler import Scheduler
    from tunesmith.service.schema import Job, StoredFile
    from tunesmith.service.store import Store, new_id

    store = Store(tmp_path / "store")
    owner, _ = store.create_key("k")
    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows())
    kind, _, rows = check_file(data, "chat.jsonl")
    store.add_file(StoredFile(id="file-1", owner=owner, filename="chat.jsonl", purpose="fine-tune", bytes=1,
                              created_at=0, path=str(data), kind=kind, rows=rows))
    executor = RayExecutor(grace=2.0)
    scheduler = Scheduler(store, executor, workers=2, grace=2.0)
    try:
        ids = []
        for steps in (4, 100000):
            jid = new_id("ftjob")
            recipe, _ = build_recipe("sft", "supervised", base=str(tiny_base), data_input={"path": str(data)},
                                     rows=rows, seed=1, hyperparameters={},
                                     settings={"recipe": {**QUICK, "train": {**QUICK["train"], "max_steps": steps}}},
                                     run_dir=str(store.job_dir(jid) / "run"))
            store.add_job(Job(id=jid, owner=owner, model="tiny", stage="sft", method={"type": "supervised"},
                              training_file="file-1", seed=1, hyperparameters={}, recipe=recipe,
                              resources={"num_cpus": 0.5, "num_gpus": 0}, status="queued", created_at=0,
                              cancel_requested=False, attempts=0, resume=False))
            ids.append(jid)
        scheduler.start()
        assert _wait(store, ids[0]).status == "succeeded"
        assert store.get_job(None, ids[0]).runner["executor"] == "ray"
        metrics = store.job_dir(ids[1]) / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not metrics.exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        store.request_cancel(owner, ids[1])
        assert _wait(store, ids[1], timeout=60).status == "cancelled"
    finally:
        scheduler.stop()
        executor.close()
        store.close()
