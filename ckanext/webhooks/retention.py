"""Pruning: old events, the delivery log, and long-disabled webhooks.

Rows go in batches, each its own short transaction, oldest first along an
index: a million old rows never become one long transaction holding locks
while workers deliver (``bench/big_tables.py`` measures the longest batch).
"""

from __future__ import annotations

import datetime

import ckan.model as model
from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from ckanext.webhooks import config as cfg
from ckanext.webhooks import leases
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import DeliveryStatus

__all__ = ["BATCH_SIZE", "prune"]

BATCH_SIZE = 5000

_PRUNE_ATTEMPTS = text(
    """
    DELETE FROM webhook_attempt WHERE id IN (
        SELECT id FROM webhook_attempt WHERE created < :cutoff
        ORDER BY id LIMIT :batch)
    """
)

# Events go with their deliveries and those deliveries' log entries (the
# foreign keys cascade), so an event batch is a tenth of the row batch.
_PRUNE_EVENTS = text(
    """
    DELETE FROM webhook_event WHERE id IN (
        SELECT e.id FROM webhook_event e
        WHERE e.expanded AND e.created < :cutoff
          AND NOT EXISTS (
            SELECT 1 FROM webhook_delivery d
            WHERE d.event_id = e.id AND d.status = :pending)
        ORDER BY e.sequence LIMIT :batch)
    """
)

_PRUNE_WEBHOOKS = text(
    """
    DELETE FROM webhook WHERE id IN (
        SELECT id FROM webhook WHERE NOT active AND disabled_at < :cutoff
        LIMIT :batch)
    """
)


def _in_batches(statement: TextClause, params: dict, batch: int) -> int:
    """Run a DELETE ... LIMIT until it deletes fewer than ``batch`` rows."""
    total = 0
    while True:
        deleted = model.Session.execute(statement, {**params, "batch": batch}).rowcount
        model.Session.commit()
        total += deleted
        if deleted < batch:
            return total


def prune(
    now: datetime.datetime | None = None, batch_size: int = BATCH_SIZE
) -> dict[str, int]:
    """Delete what is older than the configured retention; return counts.

    Events still being retried are kept whatever their age.
    """
    now = now or utcnow()
    leases.expire_overdue(now)  # expired webhooks are disabled, then pruned
    model.Session.commit()
    log_cutoff = now - datetime.timedelta(days=cfg.delivery_log_days())
    counts = {
        "attempts": _in_batches(_PRUNE_ATTEMPTS, {"cutoff": log_cutoff}, batch_size),
        "events": _in_batches(
            _PRUNE_EVENTS,
            {"cutoff": log_cutoff, "pending": DeliveryStatus.PENDING.value},
            max(1, batch_size // 10),
        ),
        "webhooks": 0,
    }
    days = cfg.delete_disabled_after_days()
    if days:
        counts["webhooks"] = _in_batches(
            _PRUNE_WEBHOOKS,
            {"cutoff": now - datetime.timedelta(days=days)},
            max(1, batch_size // 10),
        )
    return counts
