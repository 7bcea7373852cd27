"""A webhook subscribes to several topics.

``webhook.topics`` is the full list (``text[]``); ``webhook.topic`` stays,
the list's first topic, for everything that names a webhook by one topic.
Existing webhooks get their one topic as the list. Matching becomes array
overlap: the dataset and organization branches are found by their id
alone, the site-wide branch by a GIN index on ``topics``.

Revision ID: d3a7f1c9e5b2
Revises: b6e3d9a4c2f8
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "d3a7f1c9e5b2"
down_revision = "b6e3d9a4c2f8"
branch_labels = None
depends_on = None

_DATASET = "active AND package_id IS NOT NULL"
_ORGANIZATION = "active AND package_id IS NULL AND organization_id IS NOT NULL"
_SITE = "active AND package_id IS NULL AND organization_id IS NULL"


def _indexes(columns: dict[str, list[str]], **site: object) -> None:
    for name, where in (
        ("ix_webhook_follows_dataset", _DATASET),
        ("ix_webhook_follows_organization", _ORGANIZATION),
        ("ix_webhook_follows_site", _SITE),
    ):
        op.drop_index(name, table_name="webhook")
        extra = site if name.endswith("site") else {}
        op.create_index(
            name, "webhook", columns[name], postgresql_where=sa.text(where), **extra
        )


def upgrade():
    op.add_column("webhook", sa.Column("topics", ARRAY(sa.UnicodeText)))
    op.execute("UPDATE webhook SET topics = ARRAY[topic]")
    op.alter_column("webhook", "topics", nullable=False)
    _indexes(
        {
            "ix_webhook_follows_dataset": ["package_id"],
            "ix_webhook_follows_organization": ["organization_id"],
            "ix_webhook_follows_site": ["topics"],
        },
        postgresql_using="gin",
    )


def downgrade():
    _indexes(
        {
            "ix_webhook_follows_dataset": ["package_id", "topic"],
            "ix_webhook_follows_organization": ["organization_id", "topic"],
            "ix_webhook_follows_site": ["topic"],
        }
    )
    op.drop_column("webhook", "topics")
