"""Remember the dataset's previous organization and a resource's previous dataset.

So that a dataset moved between organizations (or a resource moved between
datasets) is also announced to the subscribers of the one it left.

Revision ID: 7b3e9f2a1c55
Revises: 2f1c4d0e9a7b
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "7b3e9f2a1c55"
down_revision = "2f1c4d0e9a7b"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("webhook_event", sa.Column("previous_package_id", sa.UnicodeText))
    op.add_column(
        "webhook_event", sa.Column("previous_organization_id", sa.UnicodeText)
    )


def downgrade():
    op.drop_column("webhook_event", "previous_organization_id")
    op.drop_column("webhook_event", "previous_package_id")
