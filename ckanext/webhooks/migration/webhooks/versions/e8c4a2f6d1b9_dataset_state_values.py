"""Saved dataset states keep field values, not md5 digests.

``webhook_dataset_state`` compared each field by an md5 digest of its value;
it now keeps the values themselves (cheaper to observe on every change).
States saved in the old form cannot be compared with new ones, so they are
dropped: each dataset's next change counts as a first sight (its
``changes`` are null, unknown, rather than listing every field).

Revision ID: e8c4a2f6d1b9
Revises: d3a7f1c9e5b2
Create Date: 2026-11-24
"""

from alembic import op

revision = "e8c4a2f6d1b9"
down_revision = "d3a7f1c9e5b2"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM webhook_dataset_state")


def downgrade():
    op.execute("DELETE FROM webhook_dataset_state")
