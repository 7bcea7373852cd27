"""The words of ckanext-webhooks, defined once: prefixes, topics, statuses, times.

Code, SQL parameters and templates (through ``h.webhooks_vocabulary()``) all
read them from here, so a status or a prefix cannot drift between copies.
"""

from __future__ import annotations

import datetime
import enum

__all__ = [
    "CUSTOM_PREFIX",
    "DATASET_TOPICS",
    "DATA_CHANGED",
    "DELIVERY_CHANNEL",
    "EVENT_PREFIX",
    "GONE_REASON",
    "GROUP_TOPICS",
    "LEASE_REASON",
    "ORGANIZATION_TOPICS",
    "OWNER_REASON",
    "PING",
    "PUBLIC_KEY_PREFIX",
    "RESOURCE_TOPICS",
    "SECRET_PREFIX",
    "SIGNING_KEY_PREFIX",
    "SYSADMIN_REASON",
    "TOPICS",
    "UNVERIFIED_REASON",
    "AttemptOutcome",
    "DeliveryStatus",
    "PayloadFormat",
    "PayloadKind",
    "isoformat",
]

SECRET_PREFIX = "whsec_"
# Standard Webhooks ed25519 keys (v1a signatures): the site's secret signing
# key and the public key anyone verifies with.
SIGNING_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
EVENT_PREFIX = "evt_"

DATASET_TOPICS = ("dataset/create", "dataset/update", "dataset/delete")
RESOURCE_TOPICS = (
    "resource/create",
    "resource/update",
    "resource/data_changed",
    "resource/delete",
)
DATA_CHANGED = "resource/data_changed"
ORGANIZATION_TOPICS = (
    "organization/create",
    "organization/update",
    "organization/delete",
)
GROUP_TOPICS = ("group/create", "group/update", "group/delete")
TOPICS = DATASET_TOPICS + RESOURCE_TOPICS + ORGANIZATION_TOPICS + GROUP_TOPICS
PING = "webhook/ping"
CUSTOM_PREFIX = "custom/"

# The PostgreSQL NOTIFY channel on which capture wakes a lingering delivery job.
DELIVERY_CHANNEL = "ckanext_webhooks"

# Why a webhook was disabled when its receiver answered 410 Gone: that answer
# is final for anonymous webhooks (see logic.auth.may_undo_gone).
GONE_REASON = "receiver answered 410 Gone"

# Why a webhook was disabled when its receiver never consented in time
# (delivery/consent.py), or when an anonymous webhook's lease ran out
# (leases.py). Either is undone by the action named in it.
UNVERIFIED_REASON = (
    "the receiver did not consent in time (verify it again with webhook_verify)"
)
LEASE_REASON = "its lease expired (renew it with webhook_renew)"

# Why a webhook was switched off by hand: by its owner (who is not mailed
# about it), or by a sysadmin (its owner is: see notices.py).
OWNER_REASON = "disabled by its owner"
SYSADMIN_REASON = "disabled by a sysadmin"


class DeliveryStatus(str, enum.Enum):
    """The state of one (event, webhook) delivery, ``webhook_delivery.status``."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the owner may not see the event, or the hook is off
    COALESCED = "coalesced"  # merged into a later update of the same entity


class AttemptOutcome(str, enum.Enum):
    """What one attempt led to, ``webhook_attempt.outcome``."""

    SUCCESS = "success"
    RETRY = "retry scheduled"
    GIVEN_UP = "given up"
    GONE = "gone"
    FAILED = "failed"  # a test ping that failed: pings are never retried


class PayloadKind(str, enum.Enum):
    """What a delivery's ``entity`` carries, ``webhook.payload``."""

    FULL = "full"  # the entity as the webhook's owner may see it
    THIN = "thin"  # its identity and the API URL to fetch it


class PayloadFormat(str, enum.Enum):
    """How a delivery's body is wrapped, ``webhook.format``."""

    STANDARD = "standard"  # the body of docs/topics.rst
    CLOUDEVENTS = "cloudevents"  # CloudEvents 1.0 structured JSON


def isoformat(moment: datetime.datetime | None) -> str | None:
    """The one timestamp format of payloads and the API: UTC, ISO 8601, ``Z``."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
