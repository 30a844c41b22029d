"""The job store: state in a database (SQLite in the store folder by default, any SQLAlchemy URL such
as `postgresql+psycopg://...`), files and run folders on disk. Every state change is one
transaction; claiming a queued job is one conditional UPDATE, so two schedulers can never both
claim it. The schema is the Alembic migrations' (`migrations/`), applied when the store opens.

Store folder:
    service.db            the SQLite database (without --db)
    service.lock          held by the running service (one service per store)
    files/<file-id>.jsonl uploaded files (as uploaded, after the data check)
    jobs/<job-id>/        recipe.yaml, job.json (the command), log.txt, worker.json, exit.json, run/
"""
from __future__ import annotations

import hashlib
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..core.errors import UserError
from .schema import ApiKey, Event, Job, StoredFile

ACTIVE = ("validating_files", "queued", "running")
FINAL = ("succeeded", "failed", "cancelled")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def default_url(store: Path) -> str:
    return f"sqlite:///{Path(store).resolve() / 'service.db'}"


def migrate(engine) -> None:
    """Apply every Alembic migration not yet applied (creates the schema on a new database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """The database and the store folder. Methods are the state changes (one transaction each) and
    the reads the API needs."""

    def __init__(self, root: str | Path, url: str | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "files").mkdir(exist_ok=True)
        (self.root / "jobs").mkdir(exist_ok=True)
        self.url = url or default_url(self.root)
        try:
            if self.url.startswith("sqlite"):
                self.engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30},
                                            pool_size=8, max_overflow=16)
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(self.url, pool_size=8, max_overflow=16, pool_pre_ping=True)
            migrate(self.engine)
        except Exception as e:  # noqa: BLE001 - a bad URL, an unreachable server, a missing driver
            raise UserError(f"cannot open the job database: {type(e).__name__}: {str(e).splitlines()[0]}",
                            field="--db", fix="give a SQLAlchemy URL such as sqlite:///path/service.db or "
                                              "postgresql+psycopg://user:pass@host/db") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self.sessions.begin() as s:
            yield s

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    # -- keys ----------------------------------------------------------------------------------
    def create_key(self, name: str, storage_bytes: int | None = None, max_running: int | None = None
                   ) -> tuple[str, str]:
        """(key id, the key): the key itself is returned once and stored only as its hash."""
        key = "ts-" + secrets.token_urlsafe(32)
        kid = new_id("key")
        with self.tx() as s:
            s.add(ApiKey(id=kid, name=name, key_hash=hash_key(key), created_at=int(time.time()),
                         storage_bytes=storage_bytes, max_running=max_running, revoked=False))
        return kid, key

    def key_owner(self, key: str) -> ApiKey | None:
        with self.sessions() as s:
            k = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
            return None if k is None or k.revoked else k

    def keys(self) -> list[ApiKey]:
        with self.sessions() as s:
            return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))

    # -- files ---------------------------------------------------------------------------------
    def storage_used(self, owner: str) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.coalesce(func.sum(StoredFile.bytes), 0))
                                .where(StoredFile.owner == owner)))

    def add_file(self, f: StoredFile) -> StoredFile:
        with self.tx() as s:
            s.add(f)
        return f

    def get_file(self, owner: str, file_id: str) -> StoredFile | None:
        with self.sessions() as s:
            return s.scalar(select(StoredFile).where(StoredFile.id == file_id, StoredFile.owner == owner))

    def list_files(self, owner: str, purpose: str | None = None) -> list[StoredFile]:
        with self.sessions() as s:
            q = select(StoredFile).where(StoredFile.owner == owner)
            if purpose:
                q = q.where(StoredFile.purpose == purpose)
            return list(s.scalars(q.order_by(StoredFile.created_at.desc(), StoredFile.id)))

    def delete_file(self, owner: str, file_id: str) -> bool:
        with self.tx() as s:
            f = s.scalar(select(StoredFile).where(StoredFile.id == file_id, StoredFile.owner == owner))
            if f is None:
                return False
            s.delete(f)
        Path(f.path).unlink(missing_ok=True)
        return True

    # -- jobs ----------------------------------------------------------------------------------
    def add_job(self, job: Job) -> Job:
        with self.tx() as s:
            s.add(job)
            s.flush()  # the job row before its event (the foreign key)
            s.add(Event(job_id=job.id, created_at=time.time(), level="info",
                        message=f"Created fine-tuning job: {job.id}", data={"status": job.status}))
        return self.get_job(job.owner, job.id)

    def get_job(self, owner: str | None, job_id: str) -> Job | None:
        with self.sessions() as s:
            q = select(Job).where(Job.id == job_id)
            if owner is not None:
                q = q.where(Job.owner == owner)
            return s.scalar(q)

    def job_by_model(self, owner: str, model: str) -> Job | None:
        """The succeeded job whose fine-tuned model is `model`, unless the model was deleted."""
        with self.sessions() as s:
            return s.scalar(select(Job).where(Job.fine_tuned_model == model, Job.owner == owner,
                                              Job.status == "succeeded", Job.model_deleted_at.is_(None)))

    def fine_tuned_models(self, owner: str) -> list[Job]:
        """The owner's succeeded jobs whose models are not deleted, oldest first (GET /v1/models)."""
        with self.sessions() as s:
            return list(s.scalars(select(Job).where(Job.owner == owner, Job.status == "succeeded",
                                                    Job.model_deleted_at.is_(None)).order_by(Job.seq)))

    def delete_model(self, owner: str, model: str) -> Job | None:
        """Mark the owner's fine-tuned `model` deleted (the job stays): one conditional UPDATE, so of two
        concurrent deletes one wins. None when there is no such model or it is deleted already; the
        caller removes the files once the model is unreachable."""
        mine = (Job.fine_tuned_model == model, Job.owner == owner, Job.status == "succeeded")
        with self.tx() as s:
            if s.execute(update(Job).where(*mine, Job.model_deleted_at.is_(None))
                         .values(model_deleted_at=int(time.time()))).rowcount != 1:
                return None
            return s.scalar(select(Job).where(*mine))

    def remove_model_files(self, job: Job) -> bool:
        """Remove the job's model folder (`model_path`), and nothing else: only a real folder inside the
        job's own folder (not the job folder itself, not through a symbolic link). False when there was
        nothing to remove there."""
        if not job.model_path:
            return False
        folder = Path(job.model_path)
        home = self.job_dir(job.id).resolve()
        if folder.is_symlink() or not folder.is_dir() or folder.resolve() == home \
                or not folder.resolve().is_relative_to(home):
            return False
        shutil.rmtree(folder)
        return True

    def list_jobs(self, owner: str, after: str | None, limit: int, metadata: dict[str, str] | None = None,
                  null_metadata: bool = False) -> tuple[list[Job], bool]:
        """Newest first; `after` is the id of the last job of the previous page. `metadata`: only jobs
        holding every one of these pairs; `null_metadata`: only jobs created without metadata. The
        pairs are matched here, not in SQL, reading only each job's seq and metadata: SQLite's JSON paths
        miss keys that hold quotes or non-ASCII characters."""
        with self.sessions() as s:
            where = [Job.owner == owner]
            if after:
                seq = s.scalar(select(Job.seq).where(Job.id == after, Job.owner == owner))
                if seq is not None:
                    where.append(Job.seq < seq)
            if null_metadata:
                where.append(Job.job_metadata.is_(None))
            if not metadata:
                rows = list(s.scalars(select(Job).where(*where).order_by(Job.seq.desc()).limit(limit + 1)))
                return rows[:limit], len(rows) > limit
            seqs: list[int] = []
            found = s.execute(select(Job.seq, Job.job_metadata).where(*where, Job.job_metadata.is_not(None))
                              .order_by(Job.seq.desc()).execution_options(yield_per=500))
            for seq, held in found:
                if isinstance(held, dict) and all(held.get(k) == v for k, v in metadata.items()):
                    seqs.append(seq)
                    if len(seqs) > limit:
                        break
            found.close()
            jobs = list(s.scalars(select(Job).where(Job.seq.in_(seqs[:limit])).order_by(Job.seq.desc())))
            return jobs, len(seqs) > limit

    def jobs_with_status(self, *status: str, owner: str | None = None) -> list[Job]:
        with self.sessions() as s:
            q = select(Job).where(Job.status.in_(status))
            if owner is not None:
                q = q.where(Job.owner == owner)
            return list(s.scalars(q.order_by(Job.seq)))

    def count_jobs(self) -> dict[str, int]:
        with self.sessions() as s:
            rows = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            return {status: n for status, n in rows}

    def events(self, job_id: str) -> list[Event]:
        with self.sessions() as s:
            return list(s.scalars(select(Event).where(Event.job_id == job_id).order_by(Event.seq)))

    def transition(self, job_id: str, status: str, message: str, *, expect: tuple[str, ...] | None = None,
                   level: str = "info", **values: Any) -> bool:
        """Set the job's status (and `values`) and add its event, in one transaction; with `expect`, only
        when the job is in one of those states (False when it was not: another change came first)."""
        with self.tx() as s:
            q = update(Job).where(Job.id == job_id)
            if expect is not None:
                q = q.where(Job.status.in_(expect))
            if s.execute(q.values(status=status, **values)).rowcount != 1:
                return False
            s.add(Event(job_id=job_id, created_at=time.time(), level=level, message=message,
                        data={"status": status}))
        return True

    def set_job(self, job_id: str, **values: Any) -> None:
        with self.tx() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**values))

    def add_event(self, job_id: str, message: str, level: str = "info", data: dict | None = None) -> None:
        with self.tx() as s:
            s.add(Event(job_id=job_id, created_at=time.time(), level=level, message=message, data=data))

    def request_cancel(self, owner: str, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is marked for the scheduler to stop."""
        with self.tx() as s:
            job = s.scalar(select(Job).where(Job.id == job_id, Job.owner == owner).with_for_update())
            if job is None:
                return None
            if job.status in ("validating_files", "queued"):
                job.status, job.finished_at = "cancelled", int(time.time())
                s.add(Event(job_id=job_id, created_at=time.time(), level="info", message="Job cancelled",
                            data={"status": "cancelled"}))
            elif job.status == "running" and not job.cancel_requested:
                job.cancel_requested = True
                s.add(Event(job_id=job_id, created_at=time.time(), level="info", message="Cancelling the job"))
        return self.get_job(owner, job_id)

    def claim(self, job_id: str, me: str) -> bool:
        """Queued -> running for this scheduler, atomically (False when another change came first)."""
        with self.tx() as s:
            done = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
                             .values(status="running", claimed_by=me, started_at=int(time.time()),
                                     attempts=Job.attempts + 1, runner=None)).rowcount == 1
            if done:
                s.add(Event(job_id=job_id, created_at=time.time(), level="info", message="Fine-tuning job started",
                            data={"status": "running"}))
        return done


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
