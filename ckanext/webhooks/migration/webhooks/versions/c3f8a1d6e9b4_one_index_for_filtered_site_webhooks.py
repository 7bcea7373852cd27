"""One GIN index finds the site-wide webhooks with filters.

The four indexes of ``f1d6b3a9c7e2``, one per filter column, became four
branches of the matching query, each initialised on every change even when
an earlier branch had already found a webhook. One expression index on the
webhook's first filter (``COALESCE`` of the filter columns) finds the same
webhooks in one branch: a dataset's groups, tags, formats and licences are
looked up together.

Revision ID: c3f8a1d6e9b4
Revises: f1d6b3a9c7e2
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "c3f8a1d6e9b4"
down_revision = "f1d6b3a9c7e2"
branch_labels = None
depends_on = None

_SITE = "active AND package_id IS NULL AND organization_id IS NULL"
_FIRST_FILTER = "COALESCE(filter_groups, filter_tags, filter_formats, filter_licenses)"
_BY_COLUMN = (
    ("ix_webhook_follows_site_by_groups", "filter_groups", "filter_groups IS NOT NULL"),
    (
        "ix_webhook_follows_site_by_tags",
        "filter_tags",
        "filter_groups IS NULL AND filter_tags IS NOT NULL",
    ),
    (
        "ix_webhook_follows_site_by_formats",
        "filter_formats",
        "filter_groups IS NULL AND filter_tags IS NULL AND filter_formats IS NOT NULL",
    ),
    (
        "ix_webhook_follows_site_by_license_id",
        "filter_licenses",
        "filter_groups IS NULL AND filter_tags IS NULL "
        "AND filter_formats IS NULL AND filter_licenses IS NOT NULL",
    ),
)


def upgrade():
    for name, _, _ in _BY_COLUMN:
        op.drop_index(name, table_name="webhook")
    op.create_index(
        "ix_webhook_follows_site_filtered",
        "webhook",
        [sa.text(f"({_FIRST_FILTER})")],
        postgresql_using="gin",
        postgresql_where=sa.text(f"{_SITE} AND {_FIRST_FILTER} IS NOT NULL"),
        postgresql_with={"fastupdate": "off"},
    )


def downgrade():
    op.drop_index("ix_webhook_follows_site_filtered", table_name="webhook")
    for name, column, where in _BY_COLUMN:
        op.create_index(
            name,
            "webhook",
            [column],
            postgresql_using="gin",
            postgresql_where=sa.text(f"{_SITE} AND {where}"),
            postgresql_with={"fastupdate": "off"},
        )
