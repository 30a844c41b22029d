"""The HTTP layer: OpenAI's files and fine-tuning routes on FastAPI, plus chat with the models.

    POST /v1/files                           multipart (purpose=fine-tune, file): streamed, checked
    GET  /v1/files, /v1/files/{id}, /v1/files/{id}/content; DELETE /v1/files/{id}
    POST /v1/fine_tuning/jobs                model, training_file, suffix, seed, hyperparameters, method, metadata
    GET  /v1/fine_tuning/jobs                ?after=&limit=&metadata[KEY]=VALUE (or metadata=null)
    GET  /v1/fine_tuning/jobs/{id}; POST /v1/fine_tuning/jobs/{id}/cancel
    GET  /v1/fine_tuning/jobs/{id}/events    status changes, loss and validation-loss lines
    GET  /v1/fine_tuning/jobs/{id}/checkpoints
    GET  /v1/models, /v1/models/{id}; DELETE /v1/models/{ft model} (its files; the job stays)
    POST /v1/chat/completions, /v1/completions (the bases and the key's ft: models)
    GET  /health

Every /v1 route needs `Authorization: Bearer KEY` (a key of `tunesmith service keys create`); a key
sees only its own files, jobs and models (another key's id answers 404). Errors use OpenAI's shape.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse

from .files import TooLarge, check_file, receive_upload
from .methods import (STAGE_KINDS, RequestError, build_recipe, check_metadata, check_suffix, error_body,
                      metadata_filter, stage_of)
from .models import CompletionRouter
from .schema import Job, StoredFile
from .store import Store, new_id


def file_object(f: StoredFile) -> dict:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at, "filename": f.filename,
            "purpose": f.purpose, "status": "processed", "status_details": None, "expires_at": None}


def job_object(job: Job) -> dict:
    hp = {k: v for k, v in (job.hyperparameters or {}).items()}
    for k in ("batch_size", "learning_rate_multiplier", "n_epochs"):
        hp.setdefault(k, "auto")
    kind = job.method.get("type")
    return {"id": job.id, "object": "fine_tuning.job", "created_at": job.created_at, "error": job.error,
            "fine_tuned_model": job.fine_tuned_model, "finished_at": job.finished_at, "hyperparameters": hp,
            "model": job.model, "organization_id": job.owner, "result_files": [], "seed": job.seed,
            "status": job.status, "trained_tokens": job.trained_tokens, "training_file": job.training_file,
            "validation_file": job.validation_file, "estimated_finish": None, "integrations": [],
            "user_provided_suffix": job.suffix, "metadata": job.job_metadata,
            "method": {"type": kind, kind: {"hyperparameters": hp}}}


def page(items: list[dict], after: str | None, limit: int) -> dict:
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def metric_events(job: Job, run_dir: Path) -> list[dict]:
    """Loss and validation-loss lines of the run's metrics.jsonl as events."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    at = int(path.stat().st_mtime)
    total = job.recipe.get("train", {}).get("max_steps")
    out = []
    for n, line in enumerate(path.read_text().splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        step = rec.get("step")
        if "loss" in rec:
            text = f"Step {step}{'/' + str(total) if total else ''}: training loss={rec['loss']:.4f}"
            data = {"step": step, "train_loss": rec["loss"], "total_steps": total,
                    **{k: rec[k] for k in ("lr", "grad_norm", "tokens_per_s") if k in rec}}
        elif "eval_loss" in rec:
            text = f"Step {step}: validation loss={rec['eval_loss']:.4f}"
            data = {"step": step, "valid_loss": rec["eval_loss"]}
        else:
            continue
        out.append({"id": f"ftevent-{job.id[6:]}-m{n}", "object": "fine_tuning.job.event", "created_at": at,
                    "level": "info", "message": text, "data": data, "type": "metrics"})
    return out


def checkpoints(job: Job, run_dir: Path) -> list[dict]:
    """The run's complete checkpoints, newest first, with the training loss at their step."""
    from ..core.checkpoints import MARKER

    folder = run_dir / "checkpoints"
    found = sorted((p for p in folder.glob("checkpoint-*") if (p / MARKER).exists()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if folder.is_dir() else []
    losses = {}
    if (run_dir / "metrics.jsonl").is_file():
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if "loss" in rec:
                losses[rec["step"]] = rec["loss"]
    base = job.fine_tuned_model or f"ft:{job.model}:{job.suffix or ''}:{job.id}"
    out = []
    for p in found:
        step = int(p.name.split("-")[-1])
        metrics = {"step": step, **({"train_loss": losses[step]} if step in losses else {})}
        out.append({"id": f"ftckpt-{job.id[6:]}-{step}", "object": "fine_tuning.job.checkpoint",
                    "created_at": int(p.stat().st_mtime), "fine_tuned_model_checkpoint": f"{base}:ckpt-step-{step}",
                    "fine_tuning_job_id": job.id, "metrics": metrics, "step_number": step})
    return out


class Service:
    """What the routes share: the store, the scheduler, the model pool and the settings."""

    def __init__(self, store: Store, scheduler: Any, pool: Any, bases: dict[str, str], *,
                 max_file_bytes: int, storage_bytes: int | None, resources: dict[str, Any],
                 allow_hub_models: bool = False):
        self.store, self.scheduler, self.pool, self.bases = store, scheduler, pool, bases
        self.max_file_bytes, self.storage_bytes, self.resources = max_file_bytes, storage_bytes, resources
        self.allow_hub_models = allow_hub_models
        self._keys: dict[str, tuple[float, Any]] = {}

    def cached_owner(self, authorization: str | None) -> Any:
        """The key's row when it was looked up in the last few seconds (no database read per poll)."""
        key = (authorization or "")[7:].strip()
        hit = self._keys.get(key)
        return hit[1] if hit is not None and time.monotonic() - hit[0] < 5 else None

    def owner(self, authorization: str | None) -> Any:
        """The key's row, or None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        cached = self.cached_owner(authorization)
        if cached is not None:
            return cached
        key = authorization[7:].strip()
        row = self.store.key_owner(key)
        if row is not None:  # only valid keys are remembered (wrong ones must not fill the memory)
            self._keys[key] = (time.monotonic(), row)
        return row

    def base_path(self, model: Any) -> str:
        if isinstance(model, str) and model in self.bases:
            return self.bases[model]
        if self.allow_hub_models and isinstance(model, str) and model.count("/") == 1 and not model.startswith("ft:"):
            return model
        names = ", ".join(self.bases) or "none"
        raise RequestError(f"model {model!r} is not one of the service's models ({names})", "model",
                           code="model_not_found")


def create_service_app(service: Service):
    """The FastAPI app, wrapped so chat requests reach the model engines."""
    from fastapi import APIRouter, Depends, FastAPI
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def authenticate(request: Request) -> None:
        header = request.headers.get("authorization")
        key = service.cached_owner(header) or await asyncio.to_thread(service.owner, header)
        if key is None:
            raise RequestError("Incorrect API key provided." if header else "No API key provided.",
                               code="invalid_api_key", status=401)
        request.state.owner = key

    app = FastAPI(title="tunesmith service")
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])
    store = service.store

    def error(status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
              code: str | None = None):
        return JSONResponse(error_body(message, type, param, code), status_code=status)

    def not_found(what: str, id: str, param: str = "id"):
        return error(404, f"No such {what}: {id}", param=param, code="not_found")

    @app.exception_handler(RequestError)
    async def _request_error(request, exc: RequestError):
        return error(exc.status, str(exc), exc.type, exc.param, exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        return error(exc.status_code, str(exc.detail), code={404: "not_found", 405: "method_not_allowed"}
                     .get(exc.status_code))

    @app.get("/health")
    async def health():
        counts = await asyncio.to_thread(store.count_jobs)
        return {"status": "ok", "jobs": counts, "workers": service.scheduler.workers}

    # -- files -----------------------------------------------------------------------------------
    @v1.post("/files")
    async def upload(request: Request):
        key = request.state.owner
        fid = new_id("file")
        tmp = store.root / "files" / f".{fid}.part.jsonl"
        try:
            try:
                fields, filename = await receive_upload(request, tmp, service.max_file_bytes)
            except TooLarge:
                raise RequestError(f"the file is larger than this service's limit of {service.max_file_bytes} bytes",
                                   "file", code="file_too_large", status=413) from None
            if filename is None:
                raise RequestError("no file in the upload (a multipart field named file)", "file")
            purpose = fields.get("purpose")
            if purpose != "fine-tune":
                raise RequestError(f"purpose {purpose!r} is not supported; use \"fine-tune\"", "purpose")
            size = tmp.stat().st_size
            quota = key.storage_bytes if key.storage_bytes is not None else service.storage_bytes
            if quota is not None:
                used = await asyncio.to_thread(store.storage_used, key.id)
                if used + size > quota:
                    raise RequestError(f"storage quota exceeded: {used} of {quota} bytes used, the file has {size}",
                                       "file", code="quota_exceeded", status=413)
            kind, columns, rows = await asyncio.to_thread(check_file, tmp, filename)
            final = store.root / "files" / f"{fid}.jsonl"
            os.replace(tmp, final)
            f = StoredFile(id=fid, owner=key.id, filename=filename, purpose=purpose, bytes=size,
                           created_at=int(time.time()), path=str(final),
                           kind=("openai_preference" if columns else kind), rows=rows)
            await asyncio.to_thread(store.add_file, f)
        finally:
            tmp.unlink(missing_ok=True)
        return file_object(f)

    @v1.get("/files")
    async def list_files(request: Request, purpose: str | None = None):
        files = await asyncio.to_thread(store.list_files, request.state.owner.id, purpose)
        return {"object": "list", "data": [file_object(f) for f in files], "has_more": False}

    @v1.get("/files/{file_id}")
    async def get_file(request: Request, file_id: str):
        f = await asyncio.to_thread(store.get_file, request.state.owner.id, file_id)
        return file_object(f) if f else not_found("file", file_id, "file_id")

    @v1.get("/files/{file_id}/content")
    async def file_content(request: Request, file_id: str):
        f = await asyncio.to_thread(store.get_file, request.state.owner.id, file_id)
        if f is None or not Path(f.path).is_file():
            return not_found("file", file_id, "file_id")
        return FileResponse(f.path, media_type="application/octet-stream", filename=f.filename)

    @v1.delete("/files/{file_id}")
    async def delete_file(request: Request, file_id: str):
        done = await asyncio.to_thread(store.delete_file, request.state.owner.id, file_id)
        return {"id": file_id, "object": "file", "deleted": True} if done else not_found("file", file_id, "file_id")

    # -- jobs ------------------------------------------------------------------------------------
    @v1.post("/fine_tuning/jobs")
    async def create_job(request: Request):
        key = request.state.owner
        try:
            body = await request.json()
        except ValueError:
            raise RequestError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        job = await asyncio.to_thread(new_job, service, key.id, body)
        service.scheduler.wake()
        return job_object(job)

    @v1.get("/fine_tuning/jobs")
    async def list_jobs(request: Request, after: str | None = None, limit: int = 20):
        if not 1 <= limit <= 100:
            raise RequestError("limit must be from 1 to 100", "limit")
        pairs, null = metadata_filter(request.query_params.multi_items())
        jobs, more = await asyncio.to_thread(store.list_jobs, request.state.owner.id, after, limit, pairs, null)
        return {"object": "list", "data": [job_object(j) for j in jobs], "has_more": more}

    @v1.get("/fine_tuning/jobs/{job_id}")
    async def get_job(request: Request, job_id: str):
        job = await asyncio.to_thread(store.get_job, request.state.owner.id, job_id)
        return job_object(job) if job else not_found("fine-tuning job", job_id, "fine_tuning_job_id")

    @v1.post("/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(request: Request, job_id: str):
        job = await asyncio.to_thread(store.request_cancel, request.state.owner.id, job_id)
        if job is None:
            return not_found("fine-tuning job", job_id, "fine_tuning_job_id")
        service.scheduler.wake()
        return job_object(job)

    @v1.get("/fine_tuning/jobs/{job_id}/events")
    async def job_events(request: Request, job_id: str, after: str | None = None, limit: int = 20):
        def read():
            job = store.get_job(request.state.owner.id, job_id)
            if job is None:
                return None
            items = [{"id": f"ftevent-{job.id[6:]}-{e.seq}", "object": "fine_tuning.job.event",
                      "created_at": int(e.created_at), "level": e.level, "message": e.message, "data": e.data or {},
                      "type": "message", "_t": e.created_at} for e in store.events(job.id)]
            metrics = metric_events(job, Path(job.recipe["run"]["dir"]))
            # metric lines sit between the start event and the end event
            end = [i for i in items if (i["data"] or {}).get("status") in ("succeeded", "failed", "cancelled")]
            rest = [i for i in items if i not in end]
            merged = rest + metrics + end
            for i in merged:
                i.pop("_t", None)
            return list(reversed(merged))
        items = await asyncio.to_thread(read)
        if items is None:
            return not_found("fine-tuning job", job_id, "fine_tuning_job_id")
        return page(items, after, limit)

    @v1.get("/fine_tuning/jobs/{job_id}/checkpoints")
    async def job_checkpoints(request: Request, job_id: str, after: str | None = None, limit: int = 10):
        job = await asyncio.to_thread(store.get_job, request.state.owner.id, job_id)
        if job is None:
            return not_found("fine-tuning job", job_id, "fine_tuning_job_id")
        items = await asyncio.to_thread(checkpoints, job, Path(job.recipe["run"]["dir"]))
        return page(items, after, limit)

    # -- models ----------------------------------------------------------------------------------
    def model_card(id: str, created: int, parent: str | None = None) -> dict:
        return {"id": id, "object": "model", "created": created, "owned_by": "tunesmith" if parent is None else "user",
                "parent": parent}

    @v1.get("/models")
    async def list_models(request: Request):
        def read():
            jobs = store.fine_tuned_models(request.state.owner.id)
            return [model_card(b, 0) for b in service.bases] + [
                model_card(j.fine_tuned_model, j.finished_at or 0, j.model) for j in jobs]
        return {"object": "list", "data": await asyncio.to_thread(read)}

    @v1.get("/models/{name:path}")
    async def get_model(request: Request, name: str):
        if name in service.bases:
            return model_card(name, 0)
        job = await asyncio.to_thread(store.job_by_model, request.state.owner.id, name)
        if job is None:
            return error(404, f"The model {name!r} does not exist", param="model", code="model_not_found")
        return model_card(name, job.finished_at or 0, job.model)

    @v1.delete("/models/{name:path}")
    async def delete_model(request: Request, name: str):
        """A fine-tuned model of the key's: marked deleted (new requests for it answer 404), dropped
        from the pool, then its folder removed. The job stays, with its `fine_tuned_model`, as on OpenAI."""
        if name in service.bases:
            return error(403, f"The model {name!r} is a base model of this service and cannot be deleted; "
                              "only your fine-tuned ft: models can", param="model", code="model_not_deletable")
        job = await asyncio.to_thread(store.delete_model, request.state.owner.id, name)
        if job is None:
            return error(404, f"The model {name!r} does not exist", param="model", code="model_not_found")
        await asyncio.to_thread(service.pool.drop, name)
        await asyncio.to_thread(store.remove_model_files, job)
        return {"id": name, "object": "model", "deleted": True}

    app.include_router(v1)
    return CompletionRouter(app, service)


def new_job(service: Service, owner: str, body: dict) -> Job:
    """A job from the request body: every field checked, the recipe validated by the stage config."""
    store = service.store
    known = {"model", "training_file", "validation_file", "suffix", "seed", "hyperparameters", "method",
             "integrations", "metadata"}
    for name in body:
        if name not in known:
            raise RequestError(f"unknown field {name!r}", name)
    metadata = check_metadata(body.get("metadata"))
    if body.get("integrations"):
        raise RequestError("integrations are not supported (the run's metrics are in the job's events)",
                           "integrations")
    base = service.base_path(body.get("model"))
    method = body.get("method") or {"type": "supervised"}
    kind, stage = stage_of(method)
    fid = body.get("training_file")
    f = store.get_file(owner, fid) if isinstance(fid, str) else None
    if f is None:
        raise RequestError(f"No such file: {fid}", "training_file", code="not_found")
    data_kind = "preference" if f.kind == "openai_preference" else f.kind
    if data_kind not in STAGE_KINDS[stage]:
        raise RequestError(f"method {kind} trains on {' or '.join(STAGE_KINDS[stage])} rows, but {f.filename} holds "
                           f"{data_kind} rows", "training_file", code="invalid_file")
    vid = body.get("validation_file")
    vf = None
    if vid is not None:
        vf = store.get_file(owner, vid) if isinstance(vid, str) else None
        if vf is None:
            raise RequestError(f"No such file: {vid}", "validation_file", code="not_found")
        if ("preference" if vf.kind == "openai_preference" else vf.kind) != data_kind:
            raise RequestError(f"the validation file {vf.filename} holds {vf.kind} rows, the training file "
                               f"{f.filename} {f.kind} rows: give both in one format", "validation_file",
                               code="invalid_file")
    suffix = check_suffix(body.get("suffix"))
    seed = body.get("seed")
    if seed is None:
        seed = int.from_bytes(os.urandom(3), "big")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31:
        raise RequestError("seed must be an integer from 0 to 2147483647", "seed")
    hp = body.get("hyperparameters") or {}
    if not isinstance(hp, dict):
        raise RequestError("hyperparameters must be an object", "hyperparameters")
    from .files import OPENAI_DPO_COLUMNS

    job_id = new_id("ftjob")
    data_input = {"path": f.path, **({"columns": OPENAI_DPO_COLUMNS} if f.kind == "openai_preference" else {})}
    validation_input = None if vf is None else {
        "path": vf.path, **({"columns": OPENAI_DPO_COLUMNS} if vf.kind == "openai_preference" else {})}
    recipe, _ = build_recipe(stage, kind, base=base, data_input=data_input, validation_input=validation_input,
                             rows=f.rows, seed=seed,
                             hyperparameters=hp, settings=method.get(kind) or {},
                             run_dir=str(store.job_dir(job_id) / "run"))
    given = {**hp, **((method.get(kind) or {}).get("hyperparameters") or {})}
    return store.add_job(Job(id=job_id, owner=owner, model=body["model"], stage=stage, method=method,
                             training_file=f.id, validation_file=None if vf is None else vf.id, suffix=suffix, seed=seed,
                             hyperparameters=given, recipe=recipe, resources=dict(service.resources),
                             job_metadata=metadata,
                             status="queued", created_at=int(time.time()), cancel_requested=False, attempts=0,
                             resume=False))
