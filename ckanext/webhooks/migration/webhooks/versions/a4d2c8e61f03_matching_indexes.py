"""Indexes that answer "does any webhook want this event?" without a scan.

A webhook follows one dataset, one organization, or the whole site; one
partial index per kind lets each branch of the matching query be an index
lookup, whatever the number of webhooks.

Revision ID: a4d2c8e61f03
Revises: 7b3e9f2a1c55
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "a4d2c8e61f03"
down_revision = "7b3e9f2a1c55"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_webhook_match", table_name="webhook")
    op.create_index(
        "ix_webhook_follows_dataset",
        "webhook",
        ["package_id", "topic"],
        postgresql_where=sa.text("active AND package_id IS NOT NULL"),
    )
    op.create_index(
        "ix_webhook_follows_organization",
        "webhook",
        ["organization_id", "topic"],
        postgresql_where=sa.text(
            "active AND package_id IS NULL AND organization_id IS NOT NULL"
        ),
    )
    op.create_index(
        "ix_webhook_follows_site",
        "webhook",
        ["topic"],
        postgresql_where=sa.text(
            "active AND package_id IS NULL AND organization_id IS NULL"
        ),
    )


def downgrade():
    op.drop_index("ix_webhook_follows_site", table_name="webhook")
    op.drop_index("ix_webhook_follows_organization", table_name="webhook")
    op.drop_index("ix_webhook_follows_dataset", table_name="webhook")
    op.create_index(
        "ix_webhook_match",
        "webhook",
        ["topic", "package_id", "organization_id"],
        postgresql_where=sa.text("active"),
    )
