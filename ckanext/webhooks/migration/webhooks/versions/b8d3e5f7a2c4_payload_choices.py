"""Each webhook chooses its payload, its format and extra request headers.

``webhook.payload`` is ``full`` (the entity as its owner may see it) or
``thin`` (only its identity and the API URL to fetch it); ``webhook.format``
is ``standard`` or ``cloudevents`` (CloudEvents 1.0 structured JSON).
``webhook.headers`` holds the extra request headers a receiver's gateway
needs, as a JSON object: credentials, kept like the secret and never shown.
Existing webhooks keep today's body: ``full`` and ``standard``.

Revision ID: b8d3e5f7a2c4
Revises: b8d1e5f3a2c7
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "b8d3e5f7a2c4"
down_revision = "b8d1e5f3a2c7"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "webhook",
        sa.Column("payload", sa.UnicodeText, nullable=False, server_default="full"),
    )
    op.add_column(
        "webhook",
        sa.Column("format", sa.UnicodeText, nullable=False, server_default="standard"),
    )
    op.add_column("webhook", sa.Column("headers", sa.UnicodeText, nullable=True))


def downgrade():
    op.drop_column("webhook", "headers")
    op.drop_column("webhook", "format")
    op.drop_column("webhook", "payload")
