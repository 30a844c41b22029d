"""Putting the service together: the store, its lock, the executor, the scheduler, the model pool
and the app (`open_service`), and running it with uvicorn (`run_service`)."""
from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UserError


@dataclass
class ServiceSettings:
    store: str
    models: dict[str, str] = field(default_factory=dict)      # NAME -> model folder, run or Hub id
    db: str | None = None                                     # SQLAlchemy URL (default: SQLite in the store)
    workers: int = 1
    executor: str = "local"                                   # local | ray
    ray_address: str | None = None                            # None: a local Ray; "auto": a running cluster
    max_file_bytes: int = 512 * 2 ** 20
    storage_bytes: int | None = None                          # per key, unless the key has its own
    max_running_per_key: int | None = None                    # per key, unless the key has its own
    grace: float = 10.0                                       # seconds between SIGTERM and SIGKILL on cancel
    num_cpus: float = 1                                       # each job's resource request (Ray)
    num_gpus: float = 0
    allow_hub_models: bool = False
    poll_interval: float = 0.2


def resolve_models(models: dict[str, str]) -> dict[str, str]:
    """Local folders made absolute (a job's process runs elsewhere); Hub ids as given."""
    out = {}
    for name, target in models.items():
        p = Path(target).expanduser()
        if p.exists():
            out[name] = str(p.resolve())
        elif target.count("/") == 1 and not target.startswith((".", "/", "~")):
            out[name] = target
        else:
            raise UserError("no such model folder", file=target, field="--model",
                            fix="give NAME=MODEL_FOLDER (or a run directory, or a Hub id owner/name)")
    return out


def lock_store(root: Path):
    """Hold `root/service.lock` while the service runs: one service per store."""
    f = open(root / "service.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise UserError("another service already runs on this store", file=root,
                        fix="stop it, or give another --store") from None
    return f


def open_service(settings: ServiceSettings) -> Any:
    """The ASGI app of a service over `settings.store`; the scheduler starts with the app (lifespan)
    and stops with it, leaving running jobs to the next service."""
    from contextlib import asynccontextmanager

    from .app import Service, create_service_app
    from .executors import make_executor
    from .models import ModelPool
    from .scheduler import Scheduler
    from .store import Store

    if settings.workers < 1:
        raise UserError("needs at least one worker", field="--workers", fix="give --workers 1 or more")
    bases = resolve_models(settings.models)
    store = Store(settings.store, settings.db)
    lock = lock_store(store.root)
    if not store.keys():
        lock.close()
        raise UserError("the store has no API keys", file=store.root,
                        fix=f"create one: tunesmith service keys create --store {settings.store}")
    try:
        executor = make_executor(settings.executor, settings.ray_address, settings.grace)
    except Exception as e:  # noqa: BLE001 - Ray missing or unreachable
        lock.close()
        raise UserError(f"cannot start the {settings.executor} executor: {e}", field="--executor") from None
    scheduler = Scheduler(store, executor, workers=settings.workers, max_running_per_key=settings.max_running_per_key,
                          grace=settings.grace, interval=settings.poll_interval)
    pool = ModelPool(bases)
    service = Service(store, scheduler, pool, bases, max_file_bytes=settings.max_file_bytes,
                      storage_bytes=settings.storage_bytes,
                      resources={"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus},
                      allow_hub_models=settings.allow_hub_models)
    router = create_service_app(service)

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()
            pool.close()
            executor.close()
            store.close()
            lock.close()

    router.app.router.lifespan_context = lifespan
    router.service = service
    return router


def run_service(settings: ServiceSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    import uvicorn

    app = open_service(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
