"""Site-wide webhooks with filters are found by their first filter's values.

Matching checked every active site-wide webhook with filters against each
change of every dataset: a GIN index on ``topics`` finds them all, and the
filters were read row by row. Now ``ix_webhook_follows_site`` covers the
site-wide webhooks without filters, and one GIN index per filter column
covers those whose first filter (groups, tags, formats, licences, in that
order) it is, so a change is checked only against webhooks that ask for one
of the dataset's values. They are read on every change and written seldom:
without a pending list (``fastupdate``), a lookup never scans entries not
yet merged.

Revision ID: f1d6b3a9c7e2
Revises: e8c4a2f6d1b9
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "f1d6b3a9c7e2"
down_revision = "e8c4a2f6d1b9"
branch_labels = None
depends_on = None

_SITE = "active AND package_id IS NULL AND organization_id IS NULL"
_NO_FILTERS = (
    "filter_groups IS NULL AND filter_tags IS NULL "
    "AND filter_formats IS NULL AND filter_licenses IS NULL"
)
_BY_FIRST_FILTER = (
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


def _site_index(where: str, **options: str) -> None:
    op.drop_index("ix_webhook_follows_site", table_name="webhook")
    op.create_index(
        "ix_webhook_follows_site",
        "webhook",
        ["topics"],
        postgresql_using="gin",
        postgresql_where=sa.text(where),
        postgresql_with=options,
    )


def upgrade():
    _site_index(f"{_SITE} AND {_NO_FILTERS}", fastupdate="off")
    for name, column, where in _BY_FIRST_FILTER:
        op.create_index(
            name,
            "webhook",
            [column],
            postgresql_using="gin",
            postgresql_where=sa.text(f"{_SITE} AND {where}"),
            postgresql_with={"fastupdate": "off"},
        )


def downgrade():
    for name, _, _ in _BY_FIRST_FILTER:
        op.drop_index(name, table_name="webhook")
    _site_index(_SITE)
