"""The first schema: api keys, files, jobs, events.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("storage_bytes", sa.BigInteger, nullable=True),
        sa.Column("max_running", sa.Integer, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(40), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
    )
    op.create_index("ix_files_owner", "files", ["owner"])
    op.create_table(
        "jobs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(40), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("stage", sa.String(40), nullable=False),
        sa.Column("method", sa.JSON, nullable=False),
        sa.Column("training_file", sa.String(40), nullable=False),
        sa.Column("validation_file", sa.String(40), nullable=True),
        sa.Column("suffix", sa.String(64), nullable=True),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("hyperparameters", sa.JSON, nullable=False),
        sa.Column("recipe", sa.JSON, nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("fine_tuned_model", sa.String(600), nullable=True),
        sa.Column("model_path", sa.Text, nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("trained_tokens", sa.BigInteger, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("resume", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("runner", sa.JSON, nullable=True),
        sa.Column("claimed_by", sa.String(40), nullable=True),
    )
    op.create_index("ix_jobs_id", "jobs", ["id"], unique=True)
    op.create_index("ix_jobs_owner", "jobs", ["owner"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_fine_tuned_model", "jobs", ["fine_tuned_model"])
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
    )
    op.create_index("ix_events_job_id", "events", ["job_id"])


def downgrade() -> None:
    for table in ("events", "jobs", "files", "api_keys"):
        op.drop_table(table)
