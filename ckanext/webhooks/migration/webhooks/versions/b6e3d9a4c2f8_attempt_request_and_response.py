"""The delivery log keeps the request as sent and the answer's headers.

``webhook_attempt.request_headers`` is the request's headers as a JSON list
of ``[name, value]`` pairs, the signature and any header this extension did
not write itself withheld; ``request_body`` the body sent, capped at
``ckanext.webhooks.max_logged_request_bytes``; ``response_headers`` the
answer's headers, capped at ``ckanext.webhooks.max_response_bytes`` like the
answer's body (and, like it, never kept for a receiver reachable only as an
exception to the private-address rule). Attempts logged before this
migration have none of them.

Revision ID: b6e3d9a4c2f8
Revises: c9e2f4a6b8d0
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "b6e3d9a4c2f8"
down_revision = "c9e2f4a6b8d0"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("webhook_attempt", sa.Column("request_headers", sa.UnicodeText))
    op.add_column("webhook_attempt", sa.Column("request_body", sa.UnicodeText))
    op.add_column("webhook_attempt", sa.Column("response_headers", sa.UnicodeText))


def downgrade():
    op.drop_column("webhook_attempt", "response_headers")
    op.drop_column("webhook_attempt", "request_body")
    op.drop_column("webhook_attempt", "request_headers")
