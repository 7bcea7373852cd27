"""Receivers' consent, negotiated and owners' rates, leases of anonymous webhooks.

``verified_at`` is when the receiver last consented (CloudEvents abuse
protection); the ``verification_*`` columns schedule the handshakes until it
does. ``allowed_rate`` is the receiver's ceiling, ``rate_limit`` the owner's,
both in deliveries per minute. ``renewed`` starts an anonymous webhook's
lease (its creation until it is renewed).

Revision ID: e2b9c4f1a6d8
Revises: d7f3b2a8e4c1
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "e2b9c4f1a6d8"
down_revision = "d7f3b2a8e4c1"
branch_labels = None
depends_on = None

UTC_NOW = "(now() AT TIME ZONE 'utc')"  # the model's times are naive UTC


def upgrade():
    op.add_column("webhook", sa.Column("verified_at", sa.DateTime))
    op.add_column("webhook", sa.Column("verification_started", sa.DateTime))
    op.add_column("webhook", sa.Column("verification_due", sa.DateTime))
    op.add_column(
        "webhook",
        sa.Column(
            "verification_attempts", sa.Integer, nullable=False, server_default="0"
        ),
    )
    op.add_column("webhook", sa.Column("verification_error", sa.UnicodeText))
    op.add_column("webhook", sa.Column("allowed_rate", sa.Integer))
    op.add_column("webhook", sa.Column("rate_limit", sa.Integer))
    op.add_column("webhook", sa.Column("renewed", sa.DateTime))
    op.execute("UPDATE webhook SET renewed = created")
    op.alter_column(
        "webhook", "renewed", nullable=False, server_default=sa.text(UTC_NOW)
    )
    op.create_index(
        "ix_webhook_awaiting_consent",
        "webhook",
        ["verification_due"],
        postgresql_where=sa.text("active AND verified_at IS NULL"),
    )
    op.create_index(
        "ix_webhook_anonymous_lease",
        "webhook",
        ["renewed"],
        postgresql_where=sa.text("active AND owner_id IS NULL"),
    )


def downgrade():
    op.drop_index("ix_webhook_anonymous_lease", table_name="webhook")
    op.drop_index("ix_webhook_awaiting_consent", table_name="webhook")
    for column in (
        "renewed",
        "rate_limit",
        "allowed_rate",
        "verification_error",
        "verification_attempts",
        "verification_due",
        "verification_started",
        "verified_at",
    ):
        op.drop_column("webhook", column)
