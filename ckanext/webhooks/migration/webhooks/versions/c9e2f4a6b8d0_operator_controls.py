"""Operator controls: the delivery pause, the worker heartbeat, owner notices.

``webhook_control`` is a small table of named settings shared by every
process: ``delivery_paused`` (present while delivery is paused; its value
says who paused it) and ``worker_seen`` (touched each time a delivery job
starts). It lives in PostgreSQL, not Redis, so a pause survives restarts and
a Redis flush, and the claim statement reads it in the same query.

``webhook.owner_notified_at`` is when the owner of a disabled webhook was
last mailed about it: not yet if it is NULL or older than ``disabled_at``.
The partial index finds the disabled webhooks with owners without reading
the rest.

Revision ID: c9e2f4a6b8d0
Revises: b8d3e5f7a2c4
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "c9e2f4a6b8d0"
down_revision = "b8d3e5f7a2c4"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "webhook_control",
        sa.Column("name", sa.UnicodeText, primary_key=True),
        sa.Column("value", sa.UnicodeText, nullable=True),
        sa.Column("updated", sa.DateTime, nullable=False),
    )
    op.add_column("webhook", sa.Column("owner_notified_at", sa.DateTime, nullable=True))
    op.create_index(
        "ix_webhook_owner_notice",
        "webhook",
        ["owner_id"],
        postgresql_where=sa.text("NOT active AND owner_id IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_webhook_owner_notice", table_name="webhook")
    op.drop_column("webhook", "owner_notified_at")
    op.drop_table("webhook_control")
