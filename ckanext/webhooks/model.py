"""Tables of ckanext-webhooks.

``webhook`` holds subscriptions; ``webhook_event`` is the transactional outbox
written in the same transaction as the dataset change; ``webhook_delivery`` is
one row per (event, webhook) and doubles as the delivery queue (claimed with
``FOR UPDATE SKIP LOCKED``); ``webhook_attempt`` is the delivery log.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
from typing import Any

import ckan.plugins.toolkit as tk
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    UnicodeText,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ckanext.webhooks.http import receiver_host
from ckanext.webhooks.matching import first_filter_sql, no_filters_sql
from ckanext.webhooks.vocabulary import (
    EVENT_PREFIX,
    SECRET_PREFIX,
    DeliveryStatus,
    PayloadFormat,
    PayloadKind,
)

__all__ = [
    "Webhook",
    "WebhookAttempt",
    "WebhookControl",
    "WebhookDelivery",
    "WebhookEvent",
    "make_event_id",
    "make_secret",
    "make_webhook_id",
    "utcnow",
]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def make_webhook_id() -> str:
    """192 bits from the OS CSPRNG, URL-safe: impractical to guess.

    Never starting with ``-``, so that an id is never read as an option on a
    command line (``ckan webhooks test <id>``).
    """
    while True:
        candidate = secrets.token_urlsafe(24)
        if not candidate.startswith("-"):
            return candidate


def make_event_id() -> str:
    return EVENT_PREFIX + secrets.token_urlsafe(18)


def make_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _first_topic(context: Any) -> list[str]:
    """``topics`` when only ``topic`` is given: that one."""
    return [context.get_current_parameters()["topic"]]


_SITE_WIDE = "active AND package_id IS NULL AND organization_id IS NULL"
# Matching reads these on every change; webhooks are written seldom. Without
# a pending list, a lookup never scans entries not yet merged into the index.
_READ_MOSTLY_GIN = {"fastupdate": "off"}


class Webhook(tk.BaseModel):
    __tablename__ = "webhook"

    id = Column(UnicodeText, primary_key=True, default=make_webhook_id)
    # The first of ``topics``, the topics it subscribes to (matching.py).
    topic = Column(UnicodeText, nullable=False)
    topics = Column(ARRAY(UnicodeText), nullable=False, default=_first_topic)
    address = Column(UnicodeText, nullable=False)
    # The address's host, normalised (http.receiver_host): what limits count.
    receiver_host = Column(UnicodeText, nullable=False)
    owner_id = Column(UnicodeText, nullable=True, index=True)
    created = Column(DateTime, nullable=False, default=utcnow)
    secret = Column(UnicodeText, nullable=False, default=make_secret)
    previous_secret = Column(UnicodeText, nullable=True)
    previous_secret_expires = Column(DateTime, nullable=True)
    package_id = Column(UnicodeText, nullable=True)
    organization_id = Column(UnicodeText, nullable=True)
    # Open-data filters (matching.py): None is no filter on that field; a
    # list matches any of its values. Groups by id, formats in upper case.
    filter_groups = Column(ARRAY(UnicodeText), nullable=True)
    filter_tags = Column(ARRAY(UnicodeText), nullable=True)
    filter_formats = Column(ARRAY(UnicodeText), nullable=True)
    filter_licenses = Column(ARRAY(UnicodeText), nullable=True)
    active = Column(Boolean, nullable=False, default=True)
    disabled_reason = Column(UnicodeText, nullable=True)
    disabled_at = Column(DateTime, nullable=True)
    failure_count = Column(Integer, nullable=False, default=0)
    last_delivery_at = Column(DateTime, nullable=True)
    last_delivery_status = Column(UnicodeText, nullable=True)
    # The receiver's consent (delivery/consent.py): when it last agreed, and
    # the handshakes scheduled until it does.
    verified_at = Column(DateTime, nullable=True)
    verification_started = Column(DateTime, nullable=True)
    verification_due = Column(DateTime, nullable=True)
    verification_attempts = Column(Integer, nullable=False, default=0)
    verification_error = Column(UnicodeText, nullable=True)
    # Ceilings in deliveries per minute: the receiver's and the owner's.
    allowed_rate = Column(Integer, nullable=True)
    rate_limit = Column(Integer, nullable=True)
    # The last number this webhook gave a delivery (delivery/sequencing.py).
    last_sequence = Column(BigInteger, nullable=False, default=0, server_default="0")
    # When its owner was last mailed that it is disabled (notices.py): not
    # since it was disabled if NULL or before disabled_at.
    owner_notified_at = Column(DateTime, nullable=True)
    # Start of an anonymous webhook's lease (leases.py).
    renewed = Column(
        DateTime,
        nullable=False,
        default=utcnow,
        server_default=text("(now() AT TIME ZONE 'utc')"),
    )
    # What the body carries and how it is wrapped (delivery/payload.py), and
    # extra request headers for the receiver's gateway: a JSON object whose
    # values are credentials, kept like the secret and never shown.
    payload = Column(
        UnicodeText,
        nullable=False,
        default=PayloadKind.FULL.value,
        server_default=PayloadKind.FULL.value,
    )
    format = Column(
        UnicodeText,
        nullable=False,
        default=PayloadFormat.STANDARD.value,
        server_default=PayloadFormat.STANDARD.value,
    )
    headers = Column(UnicodeText, nullable=True)

    @property
    def custom_headers(self) -> dict[str, str]:
        """The extra request headers, name to value (none: empty)."""
        return json.loads(self.headers) if self.headers else {}

    def point_at(self, address: str) -> None:
        """Set the address and the receiver host that limits count; consent
        given for another address does not carry over."""
        self.address = address
        self.receiver_host = receiver_host(address)
        self.verified_at = None
        self.verification_started = None
        self.verification_due = None
        self.verification_attempts = 0
        self.verification_error = None
        self.allowed_rate = None

    @property
    def rate_per_minute(self) -> int | None:
        """The lower of the receiver's and the owner's ceilings, if any."""
        ceilings = [r for r in (self.allowed_rate, self.rate_limit) if r]
        return min(ceilings) if ceilings else None

    # One partial index per kind of subscription (see matching.py).
    __table_args__ = (
        Index(
            "ix_webhook_follows_dataset",
            "package_id",
            postgresql_where=text("active AND package_id IS NOT NULL"),
        ),
        Index(
            "ix_webhook_follows_organization",
            "organization_id",
            postgresql_where=text(
                "active AND package_id IS NULL AND organization_id IS NOT NULL"
            ),
        ),
        Index(
            "ix_webhook_follows_site",
            "topics",
            postgresql_using="gin",
            postgresql_with=_READ_MOSTLY_GIN,
            postgresql_where=text(f"{_SITE_WIDE} AND {no_filters_sql()}"),
        ),
        Index(
            "ix_webhook_follows_site_filtered",
            text(f"({first_filter_sql()})"),
            postgresql_using="gin",
            postgresql_with=_READ_MOSTLY_GIN,
            postgresql_where=text(f"{_SITE_WIDE} AND {first_filter_sql()} IS NOT NULL"),
        ),
        Index("ix_webhook_address", "address"),
        Index(
            "ix_webhook_anonymous_receiver",
            "receiver_host",
            postgresql_where=text("owner_id IS NULL"),
        ),
        Index(
            "ix_webhook_awaiting_consent",
            "verification_due",
            postgresql_where=text("active AND verified_at IS NULL"),
        ),
        Index(
            "ix_webhook_owner_notice",
            "owner_id",
            postgresql_where=text("NOT active AND owner_id IS NOT NULL"),
        ),
        Index(
            "ix_webhook_anonymous_lease",
            "renewed",
            postgresql_where=text("active AND owner_id IS NULL"),
        ),
    )


class WebhookEvent(tk.BaseModel):
    __tablename__ = "webhook_event"

    id = Column(UnicodeText, primary_key=True, default=make_event_id)
    sequence = Column(BigInteger, Identity(), nullable=False, unique=True)
    # The writing transaction: the feed pages by (txid, sequence), commit order.
    txid = Column(BigInteger, nullable=False, server_default=text("txid_current()"))
    topic = Column(UnicodeText, nullable=False)
    entity_type = Column(UnicodeText, nullable=False)
    entity_id = Column(UnicodeText, nullable=False)
    package_id = Column(UnicodeText, nullable=True)
    organization_id = Column(UnicodeText, nullable=True)
    previous_package_id = Column(UnicodeText, nullable=True)
    previous_organization_id = Column(UnicodeText, nullable=True)
    private = Column(Boolean, nullable=False, default=False)
    snapshot = Column(UnicodeText, nullable=False, default="{}")
    # A dataset's facets before and after the event's transaction
    # (dataset_state.py), and the top-level fields that changed.
    before = Column(JSONB, nullable=True)
    after = Column(JSONB, nullable=True)
    changes = Column(ARRAY(UnicodeText), nullable=True)
    created = Column(DateTime, nullable=False, default=utcnow)
    expanded = Column(Boolean, nullable=False, default=False)

    __table_args__ = (Index("ix_webhook_event_position", "txid", "sequence"),)


class WebhookDelivery(tk.BaseModel):
    __tablename__ = "webhook_delivery"

    id = Column(BigInteger, Identity(), primary_key=True)
    event_id = Column(
        UnicodeText,
        ForeignKey("webhook_event.id", ondelete="CASCADE"),
        nullable=False,
    )
    webhook_id = Column(
        UnicodeText, ForeignKey("webhook.id", ondelete="CASCADE"), nullable=False
    )
    status = Column(UnicodeText, nullable=False, default=DeliveryStatus.PENDING.value)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime, nullable=True)
    lease_until = Column(DateTime, nullable=True)
    created = Column(DateTime, nullable=False, default=utcnow)
    updated = Column(DateTime, nullable=False, default=utcnow)
    last_status_code = Column(Integer, nullable=True)
    last_error = Column(UnicodeText, nullable=True)
    # The webhook's own number for this delivery, given when first sent.
    sequence = Column(BigInteger, nullable=True)
    # "matched", "entered" or "left" (matching.py) for dataset and resource
    # events; how many updates this delivery stands for and, when more than
    # one, the union of their changes (delivery/outbox.py).
    filter = Column(UnicodeText, nullable=True)
    coalesced = Column(Integer, nullable=False, default=1, server_default="1")
    changes = Column(ARRAY(UnicodeText), nullable=True)


class WebhookAttempt(tk.BaseModel):
    __tablename__ = "webhook_attempt"

    id = Column(BigInteger, Identity(), primary_key=True)
    delivery_id = Column(
        BigInteger,
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"),
        nullable=False,
    )
    webhook_id = Column(UnicodeText, nullable=False)
    event_id = Column(UnicodeText, nullable=False)
    topic = Column(UnicodeText, nullable=False)
    attempt = Column(Integer, nullable=False)
    created = Column(DateTime, nullable=False, default=utcnow)
    status_code = Column(Integer, nullable=True)
    error = Column(UnicodeText, nullable=True)
    latency_ms = Column(Integer, nullable=True)
    response = Column(UnicodeText, nullable=True)
    outcome = Column(UnicodeText, nullable=False)
    # The request as sent and the answer's headers (delivery/exchange.py).
    request_headers = Column(UnicodeText, nullable=True)
    request_body = Column(UnicodeText, nullable=True)
    response_headers = Column(UnicodeText, nullable=True)

    # Deleting a delivery cascades to its log entries along this index.
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id"),)


class WebhookControl(tk.BaseModel):
    """Named settings every process shares (control.py): the delivery pause
    and the time a worker last took a job."""

    __tablename__ = "webhook_control"

    name = Column(UnicodeText, primary_key=True)
    value = Column(UnicodeText, nullable=True)
    updated = Column(DateTime, nullable=False, default=utcnow)
