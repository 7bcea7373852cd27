"""Create the webhook, webhook_event, webhook_delivery and webhook_attempt tables.

Revision ID: 2f1c4d0e9a7b
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "2f1c4d0e9a7b"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "webhook",
        sa.Column("id", sa.UnicodeText, primary_key=True),
        sa.Column("topic", sa.UnicodeText, nullable=False),
        sa.Column("address", sa.UnicodeText, nullable=False),
        sa.Column("owner_id", sa.UnicodeText, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("secret", sa.UnicodeText, nullable=False),
        sa.Column("previous_secret", sa.UnicodeText, nullable=True),
        sa.Column("previous_secret_expires", sa.DateTime, nullable=True),
        sa.Column("package_id", sa.UnicodeText, nullable=True),
        sa.Column("organization_id", sa.UnicodeText, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.UnicodeText, nullable=True),
        sa.Column("disabled_at", sa.DateTime, nullable=True),
        sa.Column("failure_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_delivery_at", sa.DateTime, nullable=True),
        sa.Column("last_delivery_status", sa.UnicodeText, nullable=True),
    )
    op.create_index("ix_webhook_owner_id", "webhook", ["owner_id"])
    op.create_index("ix_webhook_address", "webhook", ["address"])
    op.create_index(
        "ix_webhook_match",
        "webhook",
        ["topic", "package_id", "organization_id"],
        postgresql_where=sa.text("active"),
    )

    op.create_table(
        "webhook_event",
        sa.Column("id", sa.UnicodeText, primary_key=True),
        sa.Column(
            "sequence", sa.BigInteger, sa.Identity(), nullable=False, unique=True
        ),
        sa.Column("topic", sa.UnicodeText, nullable=False),
        sa.Column("entity_type", sa.UnicodeText, nullable=False),
        sa.Column("entity_id", sa.UnicodeText, nullable=False),
        sa.Column("package_id", sa.UnicodeText, nullable=True),
        sa.Column("organization_id", sa.UnicodeText, nullable=True),
        sa.Column("private", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("snapshot", sa.UnicodeText, nullable=False, server_default="{}"),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expanded", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_webhook_event_unexpanded",
        "webhook_event",
        ["created"],
        postgresql_where=sa.text("NOT expanded"),
    )

    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "event_id",
            sa.UnicodeText,
            sa.ForeignKey("webhook_event.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "webhook_id",
            sa.UnicodeText,
            sa.ForeignKey("webhook.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.UnicodeText, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime, nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.UnicodeText, nullable=True),
        sa.UniqueConstraint("event_id", "webhook_id", name="uq_webhook_delivery"),
    )
    op.create_index(
        "ix_webhook_delivery_due",
        "webhook_delivery",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_delivery_webhook", "webhook_delivery", ["webhook_id"])

    op.create_table(
        "webhook_attempt",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.BigInteger,
            sa.ForeignKey("webhook_delivery.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("webhook_id", sa.UnicodeText, nullable=False),
        sa.Column("event_id", sa.UnicodeText, nullable=False),
        sa.Column("topic", sa.UnicodeText, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.UnicodeText, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("response", sa.UnicodeText, nullable=True),
        sa.Column("outcome", sa.UnicodeText, nullable=False),
    )
    op.create_index(
        "ix_webhook_attempt_webhook", "webhook_attempt", ["webhook_id", "id"]
    )
    op.create_index("ix_webhook_attempt_created", "webhook_attempt", ["created"])


def downgrade():
    op.drop_table("webhook_attempt")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_event")
    op.drop_table("webhook")
