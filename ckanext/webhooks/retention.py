"""Pruning: old events, the delivery log, and long-disabled webhooks."""

from __future__ import annotations

import datetime

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import DeliveryStatus

__all__ = ["prune"]


def prune(now: datetime.datetime | None = None) -> dict[str, int]:
    """Delete what is older than the configured retention; return counts.

    Events still being retried are kept whatever their age.
    """
    now = now or utcnow()
    log_cutoff = now - datetime.timedelta(days=cfg.delivery_log_days())
    counts = {}
    counts["attempts"] = model.Session.execute(
        text("DELETE FROM webhook_attempt WHERE created < :cutoff"),
        {"cutoff": log_cutoff},
    ).rowcount
    counts["events"] = model.Session.execute(
        text(
            """
            DELETE FROM webhook_event e
            WHERE e.created < :cutoff AND e.expanded
              AND NOT EXISTS (
                SELECT 1 FROM webhook_delivery d
                WHERE d.event_id = e.id AND d.status = :pending)
            """
        ),
        {"cutoff": log_cutoff, "pending": DeliveryStatus.PENDING.value},
    ).rowcount
    days = cfg.delete_disabled_after_days()
    counts["webhooks"] = 0
    if days:
        counts["webhooks"] = model.Session.execute(
            text("DELETE FROM webhook WHERE NOT active AND disabled_at < :cutoff"),
            {"cutoff": now - datetime.timedelta(days=days)},
        ).rowcount
    model.Session.commit()
    return counts
