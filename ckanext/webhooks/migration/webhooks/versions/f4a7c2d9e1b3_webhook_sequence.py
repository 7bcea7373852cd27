"""Each webhook numbers the events it is sent; the feed pages in commit order.

``webhook.last_sequence`` is the last number a webhook gave;
``webhook_delivery.sequence`` the number of one delivery, given when it is
first sent (a delivery its owner may not see gets none), and kept by its
retries, redeliveries and recovery.

``webhook_event.txid`` is the id of the transaction that wrote the event:
the event feed pages by ``(txid, sequence)`` (see ``feed.py``). Events
written before this migration get 0: they come first.

Revision ID: f4a7c2d9e1b3
Revises: e2b9c4f1a6d8
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "f4a7c2d9e1b3"
down_revision = "e2b9c4f1a6d8"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "webhook",
        sa.Column("last_sequence", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column("webhook_delivery", sa.Column("sequence", sa.BigInteger))
    op.add_column(
        "webhook_event",
        sa.Column("txid", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.alter_column("webhook_event", "txid", server_default=sa.text("txid_current()"))
    op.create_index("ix_webhook_event_position", "webhook_event", ["txid", "sequence"])


def downgrade():
    op.drop_index("ix_webhook_event_position", table_name="webhook_event")
    op.drop_column("webhook_event", "txid")
    op.drop_column("webhook_delivery", "sequence")
    op.drop_column("webhook", "last_sequence")
