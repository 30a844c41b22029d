"""Jobs get OpenAI's `metadata` and a mark for a deleted fine-tuned model.

Both columns are nullable with no default, so existing jobs keep their rows as they are: no
metadata, model not deleted.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("metadata", sa.JSON, nullable=True))
    op.add_column("jobs", sa.Column("model_deleted_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("model_deleted_at")
        batch.drop_column("metadata")
