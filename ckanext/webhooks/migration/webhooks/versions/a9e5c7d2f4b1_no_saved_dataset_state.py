"""The dataset's state is no longer saved.

An event's facets before and after its transaction and its ``changes`` are
worked out from what the transaction changed (``dataset_state.py``), so
``webhook_dataset_state`` is no longer written or read: it is dropped.
Downgrading brings it back empty; the earlier code then counts each
dataset's next change as a first sight.

Revision ID: a9e5c7d2f4b1
Revises: c3f8a1d6e9b4
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "a9e5c7d2f4b1"
down_revision = "c3f8a1d6e9b4"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_table("webhook_dataset_state")


def downgrade():
    op.create_table(
        "webhook_dataset_state",
        sa.Column("package_id", sa.UnicodeText, primary_key=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("before", postgresql.JSONB),
        sa.Column("current", postgresql.JSONB, nullable=False),
    )
