"""The models a service answers chat requests with: each base model of `--model NAME=PATH` and each
succeeded job's `ft:...` model, served by `tunesmith.serve`'s engine. One engine per base (loaded
on first use); a job's adapter is registered on its base's engine under the job's model name
(`Engine.add_adapter`); a fully fine-tuned model gets an engine of its own. Requests reach the
engine's own OpenAI app (`tunesmith.serve.create_app`), so chat behaves as `tunesmith serve` does."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


class ModelPool:
    def __init__(self, bases: dict[str, str], max_batch: int = 16, max_queue: int = 64,
                 default_max_tokens: int = 256, request_timeout: float = 300.0):
        self.bases = bases
        self.engines: dict[str, Any] = {}   # base name (or ft name of a full model) -> Engine
        self.apps: dict[int, Any] = {}
        self.lock = threading.Lock()
        self.options = {"max_batch": max_batch, "max_queue": max_queue}
        self.app_options = {"default_max_tokens": default_max_tokens, "request_timeout": request_timeout}

    def _engine(self, key: str, path: str | Path, name: str):
        from ..serve import Engine

        if key not in self.engines:
            self.engines[key] = Engine.load(path, name=name, **self.options).start()
        return self.engines[key]

    def engine_for(self, model: str, job: Any = None):
        """The engine serving `model` (a base name, or the model of `job`, a succeeded job); blocking."""
        from ..adapters.chain import is_adapter_folder

        with self.lock:
            if job is None:
                return self._engine(model, self.bases[model], model)
            if model in self.engines:
                return self.engines[model]
            folder = Path(job.model_path)
            if not is_adapter_folder(folder):
                return self._engine(model, folder, model)
            base = job.recipe["model"]["path"]
            engine = self._engine(job.model, base, job.model)
        if model not in engine.models:
            try:
                engine.add_adapter(model, folder)
            except Exception:  # noqa: BLE001 - PEFT cannot put it beside the adapters loaded (e.g. one with
                # trainable token rows next to one without): the adapter gets an engine of its own
                if model not in engine.models:
                    with self.lock:
                        if model not in self.engines:
                            from ..serve import Engine

                            self.engines[model] = Engine.load(base, {model: folder}, name=job.model,
                                                              **self.options).start()
                        return self.engines[model]
        return engine

    def app_for(self, engine):
        from ..serve import create_app

        with self.lock:
            if id(engine) not in self.apps:
                self.apps[id(engine)] = create_app(engine, manage_engine=False, **self.app_options)
            return self.apps[id(engine)]

    def close(self) -> None:
        with self.lock:
            for engine in self.engines.values():
                engine.stop()
            self.engines.clear()
            self.apps.clear()
