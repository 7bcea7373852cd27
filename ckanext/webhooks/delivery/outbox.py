"""From outbox to queue: each new event becomes one delivery per matching webhook.

Events are claimed with ``FOR UPDATE SKIP LOCKED`` so that workers expanding
at the same time split the events between them; the matching webhooks come
from the one SQL definition shared with capture (``matching.py``).
"""

from __future__ import annotations

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks.matching import matching_webhooks_sql
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import DeliveryStatus

__all__ = ["expand_events"]

_EXPAND = text(
    f"""
    WITH claimed AS (
        SELECT id FROM webhook_event
        WHERE NOT expanded
        ORDER BY sequence
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE webhook_event e SET expanded = true
        FROM claimed WHERE e.id = claimed.id
        RETURNING e.id, e.topic, e.package_id, e.organization_id,
                  e.previous_package_id, e.previous_organization_id, e.sequence
    ), inserted AS (
        INSERT INTO webhook_delivery
            (event_id, webhook_id, status, attempts, next_attempt_at,
             created, updated)
        SELECT m.id, w.id, :pending, 0, :now, :now, :now
        FROM marked m
        CROSS JOIN LATERAL ({
        matching_webhooks_sql(
            topics="ARRAY[m.topic, split_part(m.topic, '/', 1) || '/*', '*']",
            package_id="m.package_id",
            previous_package_id="m.previous_package_id",
            organization_id="m.organization_id",
            previous_organization_id="m.previous_organization_id",
        )
    }) w
        -- An event's deliveries get neighbouring ids, so they are claimed
        -- together and share one view of the entity per batch.
        ORDER BY m.sequence, w.id
        ON CONFLICT ON CONSTRAINT uq_webhook_delivery DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM inserted)
    """
)


def expand_events(limit: int = 500) -> int:
    """Turn new events into one delivery per matching webhook; return events."""
    total = 0
    while True:
        events, _ = model.Session.execute(
            _EXPAND,
            {"limit": limit, "now": utcnow(), "pending": DeliveryStatus.PENDING.value},
        ).one()
        model.Session.commit()
        total += events
        if events < limit:
            return total
