"""Filters by group, tag, resource format and licence; entering and leaving;
the fields that changed; coalesced updates.

``webhook.filter_*`` hold a webhook's filters (NULL: no filter on that
field; a list matches any of its values). ``webhook_dataset_state`` keeps,
per dataset, what the filters look at and a digest of each field as of the
last recorded change (``dataset_state.py``), so that an event knows the
dataset before and after its transaction: ``webhook_event.before`` and
``after``, and ``changes``. ``webhook_delivery.filter`` says whether the
dataset entered, left or stayed in the webhook's filter; ``coalesced`` and
``changes`` count and sum up the updates merged into one delivery.

Revision ID: b8d1e5f3a2c7
Revises: f4a7c2d9e1b3
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "b8d1e5f3a2c7"
down_revision = "f4a7c2d9e1b3"
branch_labels = None
depends_on = None

_TEXTS = postgresql.ARRAY(sa.UnicodeText)
_FILTERS = ("filter_groups", "filter_tags", "filter_formats", "filter_licenses")


def upgrade():
    for name in _FILTERS:
        op.add_column("webhook", sa.Column(name, _TEXTS))
    op.add_column("webhook_event", sa.Column("before", postgresql.JSONB))
    op.add_column("webhook_event", sa.Column("after", postgresql.JSONB))
    op.add_column("webhook_event", sa.Column("changes", _TEXTS))
    op.add_column("webhook_delivery", sa.Column("filter", sa.UnicodeText))
    op.add_column(
        "webhook_delivery",
        sa.Column("coalesced", sa.Integer, nullable=False, server_default="1"),
    )
    op.add_column("webhook_delivery", sa.Column("changes", _TEXTS))
    op.create_table(
        "webhook_dataset_state",
        sa.Column("package_id", sa.UnicodeText, primary_key=True),
        sa.Column("txid", sa.BigInteger, nullable=False),
        sa.Column("before", postgresql.JSONB),
        sa.Column("current", postgresql.JSONB, nullable=False),
    )
    # Open update windows of one entity, found when the next update of it
    # arrives (delivery/outbox.py).
    op.create_index(
        "ix_webhook_delivery_open_window",
        "webhook_delivery",
        ["webhook_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending' AND sequence IS NULL"),
    )


def downgrade():
    op.drop_index("ix_webhook_delivery_open_window", table_name="webhook_delivery")
    op.drop_table("webhook_dataset_state")
    for name in ("changes", "coalesced", "filter"):
        op.drop_column("webhook_delivery", name)
    for name in ("changes", "after", "before"):
        op.drop_column("webhook_event", name)
    for name in _FILTERS:
        op.drop_column("webhook", name)
