"""An OpenAI-compatible HTTP API on FastAPI over an `Engine`.

    GET  /v1/models              the base (its folder name) and every adapter (its name)
    POST /v1/chat/completions    messages, temperature, top_p, max_tokens, stop, seed, n, stream
    POST /v1/completions         prompt, same sampling fields
    POST /v1/adapters            {"name": NAME, "path": ADAPTER_DIR}: load an adapter without restarting
    GET  /health                 {"status": "ok", ...}
    GET  /metrics                Prometheus text

Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 bad request or
prompt too long, 401 bad API key, 404 unknown model, 503 queue full, 504 timed out in the queue.
With an API key (`--api-key`, env TUNESMITH_API_KEY) every /v1 route needs
`Authorization: Bearer KEY`; /health and /metrics stay open.
"""

import asyncio
import json
import time
from contextlib import asynccontextmanager
from typing import Any

from .engine import Engine, EngineError, Job, QueueFull, new_id

DEFAULT_MAX_TOKENS = 256
MAX_N = 8


def _error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
                code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def create_app(engine: Engine, *, api_key: str | None = None, request_timeout: float = 300.0,
               default_max_tokens: int = DEFAULT_MAX_TOKENS, manage_engine: bool = True):
    """The FastAPI app serving `engine` (started and stopped with the app when `manage_engine`)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @asynccontextmanager
    async def lifespan(app):
        if manage_engine:
            engine.start()
        yield
        if manage_engine:
            engine.stop()

    app = FastAPI(title="tunesmith", lifespan=lifespan)
    app.state.engine = engine

    def error(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
              code: str | None = None):
        return JSONResponse(_error_body(message, type, param, code), status_code=status)

    def engine_error(e: EngineError):
        return error(e.status, str(e), e.type, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        return error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error(exc.status_code, str(exc.detail), param=None, code=code)

    @app.middleware("http")
    async def _auth_and_count(request: Request, call_next):
        path = request.url.path
        if api_key and path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            if header != f"Bearer {api_key}":
                engine.metrics.request(path, 401)
                return error(401, "Incorrect API key provided." if header else "No API key provided.",
                             code="invalid_api_key")
        response = await call_next(request)
        if path.startswith("/v1") and not path.endswith("completions"):
            engine.metrics.request(path, response.status_code)
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": engine.models, "queue_depth": engine.queue_depth}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(engine.metrics.render(engine.queue_depth, engine.models),
                                 media_type="text/plain; version=0.0.4")

    def model_card(name: str) -> dict:
        return {"id": name, "object": "model", "created": engine.created, "owned_by": "tunesmith",
                "root": str(engine.adapters.get(name, "")) or None,
                "parent": None if name == engine.base_name else engine.base_name}

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [model_card(m) for m in engine.models]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str):
        if name not in engine.models:
            return error(404, f"the model {name!r} does not exist", param="model", code="model_not_found")
        return model_card(name)

    @app.post("/v1/adapters")
    async def add_adapter(request: Request):
        try:
            body = await _json(request)
            name, path = body.get("name"), body.get("path")
            if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
                raise EngineError("give name and path (strings)", param="name" if not name else "path")
            await asyncio.to_thread(engine.add_adapter, name, path)
        except EngineError as e:
            return engine_error(e)
        except QueueFull:
            return error(503, "the request queue is full; try again later", "server_error", code="queue_full")
        return model_card(name)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _complete(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _complete(request, chat=False)

    async def _complete(request: Request, chat: bool):
        endpoint = "/v1/chat/completions" if chat else "/v1/completions"
        start = time.perf_counter()
        try:
            body = await _json(request)
            job, stream, include_usage = _make_job(engine, body, chat, request_timeout, default_max_tokens)
            engine.submit(job)
        except EngineError as e:
            engine.metrics.request(endpoint, e.status)
            return engine_error(e)
        except QueueFull:
            engine.metrics.request(endpoint, 503)
            return error(503, "the request queue is full; try again later", "server_error", code="queue_full")
        rid = new_id("chatcmpl" if chat else "cmpl")
        obj = "chat.completion" if chat else "text_completion"
        # wait for the first event: a job refused by the worker (timed out in the queue) still gets a JSON error
        first = await _next_event(job, request)
        if first is None:
            engine.metrics.request(endpoint, 499)
            return error(499, "client closed the request", code="cancelled")
        if first[0] == "error":
            engine.metrics.request(endpoint, first[1].status)
            return engine_error(first[1])
        if stream:
            return StreamingResponse(_sse(job, request, first, rid, obj, chat, include_usage, endpoint, start),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        texts, reasons, usage, ev = [""] * job.n, [None] * job.n, None, first
        while True:
            if ev is None:
                engine.metrics.request(endpoint, 499)
                return error(499, "client closed the request", code="cancelled")
            if ev[0] == "delta":
                texts[ev[1]] += ev[2]
            elif ev[0] == "finish":
                reasons[ev[1]] = ev[2]
            elif ev[0] == "error":
                engine.metrics.request(endpoint, ev[1].status)
                return engine_error(ev[1])
            else:
                usage = ev[1]
                break
            ev = await _next_event(job, request)
        engine.metrics.request(endpoint, 200, time.perf_counter() - start)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                        "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons))]
        else:
            choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": r}
                       for i, (t, r) in enumerate(zip(texts, reasons))]
        return {"id": rid, "object": obj, "created": int(job.created), "model": job.model, "choices": choices,
                "usage": usage, "system_fingerprint": None}

    async def _sse(job: Job, request: Request, first: tuple, rid: str, obj: str, chat: bool, include_usage: bool,
                   endpoint: str, start: float):
        obj_chunk = obj + ".chunk" if chat else obj

        def chunk(choices: list, usage: dict | None = None) -> str:
            data = {"id": rid, "object": obj_chunk, "created": int(job.created), "model": job.model,
                    "choices": choices, "system_fingerprint": None}
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        def choice(i: int, text: str | None = None, reason: str | None = None, role: bool = False) -> dict:
            if chat:
                delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
                return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {"index": i, "text": text or "", "logprobs": None, "finish_reason": reason}

        status = 499
        try:
            if chat:
                yield chunk([choice(i, role=True) for i in range(job.n)])
            ev = first
            while ev is not None:
                if ev[0] == "delta":
                    yield chunk([choice(ev[1], text=ev[2])])
                elif ev[0] == "finish":
                    yield chunk([choice(ev[1], reason=ev[2])])
                elif ev[0] == "error":
                    status = ev[1].status
                    e = ev[1]
                    yield f"data: {json.dumps(_error_body(str(e), e.type, e.param, e.code))}\n\n"
                    break
                else:
                    if include_usage:
                        yield chunk([], ev[1])
                    yield "data: [DONE]\n\n"
                    status = 200
                    break
                if await request.is_disconnected():
                    break
                ev = await _next_event(job, request)
        finally:
            if status != 200:
                job.cancel()  # the client went away (or the stream failed): the worker stops its rows
            engine.metrics.request(endpoint, status, time.perf_counter() - start if status == 200 else None)

    return app


async def _json(request) -> dict:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise EngineError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise EngineError("the request body must be a JSON object")
    return body


async def _next_event(job: Job, request, poll: float = 0.5) -> tuple | None:
    """The job's next event; None (and the job cancelled) when the client disconnected first."""
    while True:
        try:
            return await asyncio.wait_for(job.events.get(), poll)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancel()
                return None


def _number(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise EngineError(f"{key} must be a number from {lo} to {hi}", param=key)
    return float(value)


def _integer(body: dict, key: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise EngineError(f"{key} must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""),
                          param=key)
    return value


def _content(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: text only
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise EngineError("only text content parts are supported", param=f"messages[{i}].content")
            parts.append(part["text"])
        return "".join(parts)
    raise EngineError("content must be a string or a list of text parts", param=f"messages[{i}].content")


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise EngineError("messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise EngineError("each message needs a role: system, user, assistant or tool", param=f"messages[{i}]")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": _content(m.get("content"), i)})
    return out


def _make_job(engine: Engine, body: dict, chat: bool, timeout: float, default_max_tokens: int
              ) -> tuple[Job, bool, bool]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise EngineError("model is required", param="model")
    if model not in engine.models:
        raise EngineError(f"the model {model!r} does not exist; served: {', '.join(engine.models)}", status=404,
                          code="model_not_found", param="model")
    if body.get("logprobs") or body.get("echo") or (body.get("best_of") or 1) > 1:
        raise EngineError("logprobs, echo and best_of are not supported", param="logprobs")
    if chat:
        ids = engine.render_chat(_messages(body))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            ids = list(prompt)
        elif isinstance(prompt, str):
            ids = engine.encode(prompt, add_special_tokens=True)
        else:
            raise EngineError("prompt must be a string (or a list of token ids); batches of prompts are not "
                              "supported: send one request each", param="prompt")
    max_tokens = _integer(body, "max_completion_tokens", 1) or _integer(body, "max_tokens", 1)
    max_tokens = engine.check_length(len(ids), max_tokens, default_max_tokens)
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4
                             or not all(isinstance(s, str) and s for s in stop)):
        raise EngineError("stop must be a string or a list of up to 4 non-empty strings", param="stop")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise EngineError("stream must be true or false", param="stream")
    options = body.get("stream_options") or {}
    job = Job(model=model, prompt_ids=ids, max_tokens=max_tokens,
              temperature=_number(body, "temperature", 1.0, 0.0, 2.0), top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
              seed=_integer(body, "seed", -2**63), n=_integer(body, "n", 1, MAX_N) or 1, stop=list(stop or []),
              timeout=timeout, loop=asyncio.get_running_loop())
    if job.top_p == 0.0:
        job.top_p = 1e-6
    return job, stream, bool(isinstance(options, dict) and options.get("include_usage"))


def run_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
               request_timeout: float = 300.0, default_max_tokens: int = DEFAULT_MAX_TOKENS,
               log_level: str = "info") -> None:
    """Serve `engine` with uvicorn until Ctrl-C."""
    import uvicorn

    app = create_app(engine, api_key=api_key, request_timeout=request_timeout, default_max_tokens=default_max_tokens)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
