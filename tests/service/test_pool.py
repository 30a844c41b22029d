"""The model pool drops a deleted fine-tuned model: its adapter leaves the shared engine (which keeps
serving the base and the other adapters, with the same answers), a request already queued for it
answers 404, and a fully fine-tuned model's own engine is stopped."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from serve._fixtures import make_adapter

from tunesmith.serve import EngineError, Job
from tunesmith.serve.engine import _Control
from tunesmith.service.models import ModelPool


def test_dropping_fine_tuned_models(tiny_base, tmp_path):
    def job(folder) -> SimpleNamespace:  # what the pool reads of a succeeded job
        return SimpleNamespace(model="tiny", model_path=str(folder), recipe={"model": {"path": str(tiny_base)}})

    jobs = {"ft:a": job(make_adapter(tiny_base, tmp_path / "a", 1)),
            "ft:b": job(make_adapter(tiny_base, tmp_path / "b", 2)), "ft:full": job(tiny_base)}
    pool = ModelPool({"tiny": str(tiny_base)})
    try:
        engine = pool.engine_for("ft:a", jobs["ft:a"])
        assert pool.engine_for("ft:b", jobs["ft:b"]) is engine and engine.models == ["tiny", "ft:a", "ft:b"]
        ids = engine.render_chat([{"role": "user", "content": "Tell me a story."}])

        def answer(model: str) -> str:
            request = Job(model=model, prompt_ids=ids, max_tokens=6, temperature=0)
            return engine.submit(request).wait(60)["choices"][0][0]

        before = {m: answer(m) for m in ("tiny", "ft:a", "ft:b")}
        assert len(set(before.values())) == 3  # the adapters change the answer

        gate = threading.Event()
        engine.pending_control(_Control(lambda: gate.wait(30)))  # the worker waits here
        dropping = threading.Thread(target=pool.drop, args=("ft:a",))
        dropping.start()
        deadline = time.monotonic() + 10
        while engine.queue.qsize() < 1:  # the removal is queued behind the gate
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = engine.submit(Job(model="ft:a", prompt_ids=ids, max_tokens=6, temperature=0))
        gate.set()
        dropping.join(30)
        with pytest.raises(EngineError) as e:
            queued.wait(30)
        assert e.value.status == 404 and e.value.code == "model_not_found"
        assert engine.models == ["tiny", "ft:b"] and "ft:a" not in engine.adapters
        with pytest.raises(EngineError):
            engine.submit(Job(model="ft:a", prompt_ids=ids, max_tokens=6, temperature=0))
        assert answer("tiny") == before["tiny"] and answer("ft:b") == before["ft:b"]
        pool.drop("ft:b")  # the last adapter: the base still answers as before, and adapters load again
        assert engine.models == ["tiny"] and answer("tiny") == before["tiny"]
        assert pool.engine_for("ft:a", jobs["ft:a"]) is engine and answer("ft:a") == before["ft:a"]

        full = pool.engine_for("ft:full", jobs["ft:full"])  # a full model: an engine of its own
        assert full is not engine and pool.engines["ft:full"] is full
        pool.drop("ft:full")
        assert "ft:full" not in pool.engines and full._thread is None and "tiny" in pool.engines
    finally:
        pool.close()
