"""The models a service answers chat requests with: each base model of `--model NAME=PATH` and each
succeeded job's `ft:...` model, served by `tunesmith.serve`'s engine. One engine per base (loaded
on first use); a job's adapter is registered on its base's engine under the job's model name
(`Engine.add_adapter`); a fully fine-tuned model gets an engine of its own. Requests reach the
engine's own OpenAI app (`tunesmith.serve.create_app`), so chat behaves as `tunesmith serve` does:
`CompletionRouter` checks the key and that the model is the key's, then hands the request on."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from .methods import RequestError, error_body

COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions")


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

    def drop(self, model: str) -> None:
        """Stop serving the fine-tuned `model` (deleted): its own engine is stopped, or its adapter
        unloaded from the base's engine (which keeps serving the base and the other adapters)."""
        with self.lock:
            own = self.engines.pop(model, None)
            shared = [e for e in self.engines.values() if model in e.adapters]
            if own is not None:
                self.apps.pop(id(own), None)
        if own is not None:
            own.stop()
        for engine in shared:
            engine.remove_adapter(model)

    def close(self) -> None:
        with self.lock:
            for engine in self.engines.values():
                engine.stop()
            self.engines.clear()
            self.apps.clear()


class CompletionRouter:
    """ASGI wrapper: chat and completion requests go to the engine app of the model they name (after
    the key check and the model's ownership check); everything else to the service app."""

    def __init__(self, app: Any, service: Any):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in COMPLETION_PATHS or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        from starlette.responses import JSONResponse

        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            target = await self._engine_app(headers.get("authorization"), body)
        except RequestError as e:
            return await JSONResponse(error_body(str(e), e.type, e.param, e.code), e.status)(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await target(scope, replay, send)

    async def _engine_app(self, authorization: str | None, body: bytes):
        service = self.service
        key = await asyncio.to_thread(service.owner, authorization)
        if key is None:
            raise RequestError("Incorrect API key provided." if authorization else "No API key provided.",
                               code="invalid_api_key", status=401)
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            raise RequestError("the request body is not a valid JSON object") from None
        job = None
        if model not in service.bases:
            job = await asyncio.to_thread(service.store.job_by_model, key.id, model) if isinstance(model, str) else None
            if job is None:
                raise RequestError(f"The model {model!r} does not exist", "model", code="model_not_found", status=404)
        try:
            engine = await asyncio.to_thread(service.pool.engine_for, model, job)
        except Exception as e:  # noqa: BLE001 - a model that cannot be served (e.g. a reward model)
            raise RequestError(f"model {model!r} cannot be served: {e}", "model", code="model_not_servable") from None
        return service.pool.app_for(engine)
