"""Index the delivery log by delivery.

Deleting a delivery (when ``prune`` removes its event) makes PostgreSQL look
for log entries that reference it; without this index that is a scan of the
whole log for every delivery, which made pruning a large history crawl.

Revision ID: d7f3b2a8e4c1
Revises: c5e1a9d3b7f2
Create Date: 2026-11-23
"""

from alembic import op

revision = "d7f3b2a8e4c1"
down_revision = "c5e1a9d3b7f2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_webhook_attempt_delivery", "webhook_attempt", ["delivery_id"])


def downgrade():
    op.drop_index("ix_webhook_attempt_delivery", table_name="webhook_attempt")
