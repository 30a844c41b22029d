"""The job store's tables (SQLAlchemy 2 ORM). The schema itself is created and changed only by the
Alembic migrations in `migrations/versions/`; these classes describe it for queries."""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """A tenant: its key is stored only as a SHA-256 hash (keys are 256-bit random tokens)."""
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)   # quota; None: the service's
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)        # quota; None: the service's
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class StoredFile(Base):
    __tablename__ = "files"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    purpose: Mapped[str] = mapped_column(String(40))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(40))      # chat | preference | openai_preference | ...
    rows: Mapped[int] = mapped_column(Integer)


class Job(Base):
    __tablename__ = "jobs"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # FIFO order, pagination
    id: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    owner: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    model: Mapped[str] = mapped_column(String(500))
    stage: Mapped[str] = mapped_column(String(40))
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(600), nullable=True, index=True)
    model_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)      # process starts (a resume adds one)
    resume: Mapped[bool] = mapped_column(Boolean, default=False)   # the next start continues the run
    runner: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # executor's record of the process
    claimed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # the request's `metadata` (declarative reserves the attribute name); None is SQL NULL, so that
    # `metadata=null` finds both the jobs created without it and those of a 0001 database
    job_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON(none_as_null=True), nullable=True)
    model_deleted_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # DELETE /v1/models/{ft model}


class Event(Base):
    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
