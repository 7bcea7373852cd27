"""Remember each webhook's normalised receiver host.

Limits count anonymous webhooks per receiver host, not per spelling of an
address, and the per-host delivery rate is keyed by it.

Revision ID: c5e1a9d3b7f2
Revises: a4d2c8e61f03
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "c5e1a9d3b7f2"
down_revision = "a4d2c8e61f03"
branch_labels = None
depends_on = None


def _host(address):
    from ckanext.webhooks.http import AddressRejected, receiver_host

    try:
        return receiver_host(address)
    except AddressRejected:
        return address.lower()


def upgrade():
    op.add_column("webhook", sa.Column("receiver_host", sa.UnicodeText))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, address FROM webhook")).all()
    for webhook_id, address in rows:
        bind.execute(
            sa.text("UPDATE webhook SET receiver_host = :host WHERE id = :id"),
            {"host": _host(address), "id": webhook_id},
        )
    op.alter_column("webhook", "receiver_host", nullable=False)
    op.create_index(
        "ix_webhook_anonymous_receiver",
        "webhook",
        ["receiver_host"],
        postgresql_where=sa.text("owner_id IS NULL"),
    )


def downgrade():
    op.drop_index("ix_webhook_anonymous_receiver", table_name="webhook")
    op.drop_column("webhook", "receiver_host")
