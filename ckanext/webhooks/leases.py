"""Leases of anonymous webhooks: they expire unless renewed.

With ``ckanext.webhooks.anonymous_lease_days`` above 0, an anonymous webhook
expires that many days after ``renewed`` (its creation, then each
``webhook_renew``). An expired webhook sends nothing from that moment
(``expired`` is checked as each delivery is rendered); ``expire_overdue``
then disables it, dated at its expiry, so that ``ckan webhooks prune``
deletes it ``delete_disabled_after_days`` later. Webhooks with an owner
never expire: their owner is accountable for them.
"""

from __future__ import annotations

import datetime

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks.model import Webhook
from ckanext.webhooks.vocabulary import LEASE_REASON

__all__ = ["expire_overdue", "expired", "expires", "renew"]

_EXPIRE = text(
    """
    UPDATE webhook
    SET active = false, disabled_reason = :reason,
        disabled_at = renewed + make_interval(days => :days)
    WHERE active AND owner_id IS NULL AND renewed < :cutoff
    """
)


def expires(webhook: Webhook) -> datetime.datetime | None:
    """When ``webhook`` expires; None if it never does."""
    days = cfg.anonymous_lease_days()
    if days <= 0 or webhook.owner_id is not None or webhook.renewed is None:
        return None
    return webhook.renewed + datetime.timedelta(days=days)


def expired(webhook: Webhook, now: datetime.datetime) -> bool:
    ends = expires(webhook)
    return ends is not None and ends <= now


def expire_overdue(now: datetime.datetime) -> int:
    """Disable the anonymous webhooks whose lease ran out; return how many.

    In the caller's transaction.
    """
    days = cfg.anonymous_lease_days()
    if days <= 0:
        return 0
    cutoff = now - datetime.timedelta(days=days)
    return model.Session.execute(
        _EXPIRE, {"reason": LEASE_REASON, "days": days, "cutoff": cutoff}
    ).rowcount


def renew(webhook: Webhook, now: datetime.datetime) -> None:
    """Start the lease again; a webhook disabled by its lease is enabled."""
    webhook.renewed = now
    if not webhook.active and webhook.disabled_reason == LEASE_REASON:
        webhook.active = True
        webhook.disabled_at = None
        webhook.disabled_reason = None
