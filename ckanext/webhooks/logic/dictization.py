"""Webhooks, delivery-log entries and events as plain JSON-able dicts.

The one place that decides what a webhook looks like from outside: with its
secret only for the actions that hand the secret to whoever controls it
(``webhook_show``, ``webhook_rotate_secret``), and without it everywhere else,
payload plugins included.
"""

from __future__ import annotations

from typing import Any

from ckanext.webhooks import leases
from ckanext.webhooks.delivery import consent, exchange
from ckanext.webhooks.model import Webhook, WebhookAttempt, WebhookDelivery
from ckanext.webhooks.vocabulary import AttemptOutcome, DeliveryStatus, isoformat

__all__ = ["attempt_dictize", "webhook_dictize"]


def webhook_dictize(webhook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
    data = {
        "id": webhook.id,
        "topic": webhook.topic,
        "topics": list(webhook.topics),
        "address": webhook.address,
        "dataset": webhook.package_id,
        "organization": webhook.organization_id,
        "group": webhook.filter_groups,
        "tag": webhook.filter_tags,
        "res_format": webhook.filter_formats,
        "license_id": webhook.filter_licenses,
        "owner_id": webhook.owner_id,
        "created": isoformat(webhook.created),
        "previous_secret_expires": isoformat(webhook.previous_secret_expires),
        "active": webhook.active,
        "disabled_reason": webhook.disabled_reason,
        "disabled_at": isoformat(webhook.disabled_at),
        "failure_count": webhook.failure_count,
        "last_delivery_at": isoformat(webhook.last_delivery_at),
        "last_delivery_status": webhook.last_delivery_status,
        "verified": webhook.verified_at is not None,
        "verified_at": isoformat(webhook.verified_at),
        "verification": consent.state(webhook),
        "verification_error": webhook.verification_error,
        "allowed_rate": webhook.allowed_rate,
        "rate_limit": webhook.rate_limit,
        "expires": isoformat(leases.expires(webhook)),
        "payload": webhook.payload,
        "format": webhook.format,
        # Names only: the values are credentials, never shown again.
        "headers": sorted(webhook.custom_headers, key=str.lower),
    }
    if with_secret:
        data["secret"] = webhook.secret
    return data


def attempt_dictize(
    attempt: WebhookAttempt, delivery: WebhookDelivery | None = None
) -> dict[str, Any]:
    """A log entry; ``delivery`` (its own) tells when a retry is due."""
    retry_due = (
        delivery is not None
        and attempt.outcome == AttemptOutcome.RETRY.value
        and delivery.status == DeliveryStatus.PENDING.value
        and delivery.attempts == attempt.attempt
    )
    return {
        "id": str(attempt.id),
        "delivery_id": str(attempt.delivery_id),
        "event_id": attempt.event_id,
        "webhook_id": attempt.webhook_id,
        "topic": attempt.topic,
        "attempt": attempt.attempt,
        "created": isoformat(attempt.created),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "latency_ms": attempt.latency_ms,
        "response": attempt.response,
        "outcome": attempt.outcome,
        "outcome_text": exchange.describe_outcome(
            attempt.outcome, attempt.status_code, attempt.error, attempt.attempt
        ),
        "next_attempt_at": isoformat(delivery.next_attempt_at) if retry_due else None,
        "request": {
            "headers": exchange.parsed_headers(attempt.request_headers),
            "body": attempt.request_body,
        },
        "response_headers": exchange.parsed_headers(attempt.response_headers),
    }
