"""Fine-tuning as a service: `tunesmith service --store DIR`, an OpenAI-compatible fine-tuning API.

    store.py      the job store (SQLAlchemy; SQLite by default, PostgreSQL by URL; Alembic migrations)
    schema.py     its tables; migrations/ the Alembic scripts that create and change them
    files.py      uploads streamed to disk and checked with tunesmith's data check
    methods.py    OpenAI job requests -> tunesmith stage recipes (validated by the stage configs)
    scheduler.py  the workers: FIFO with per-key limits, cancel, failure, restart recovery
    executors.py  where a job's process runs: local processes, or Ray tasks
    runner.py     a job's process: the tunesmith CLI stage, its lock, pid and exit record
    models.py     chat with the bases and the fine-tuned `ft:` models (tunesmith.serve's engine and app)
    app.py        the HTTP routes (FastAPI)
    service.py    putting it together: `open_service`, `run_service`
"""
from .service import ServiceSettings, open_service, run_service

__all__ = ["ServiceSettings", "open_service", "run_service"]
