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
from ckanext.webhooks.vocabulary import PING, DeliveryStatus

__all__ = ["expand_events", "recover"]

# The topics a subscription may name to receive an event of topic ``{topic}``.
_SUBSCRIBED_BY = "ARRAY[{topic}, split_part({topic}, '/', 1) || '/*', '*']"

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
            topics=_SUBSCRIBED_BY.format(topic="m.topic"),
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


# Queue again, for one webhook, the events of a window that match it and
# that it has not received: no delivery yet (it was disabled, or did not
# exist), or one that was given up or skipped. Delivered and pending ones are
# left alone, so nothing goes twice. Due one microsecond apart, in the feed's
# order (feed.py), so they are claimed in that order.
_RECOVER = text(
    f"""
    WITH wanted AS (
        SELECT e.id, e.txid, e.sequence FROM webhook_event e, webhook w
        WHERE w.id = :webhook
          AND (e.txid, e.sequence) > (:after_txid, :after_sequence)
          AND (e.txid, e.sequence) <= (:upto_txid, :upto_sequence)
          AND e.topic != :ping AND e.entity_type != 'webhook'
          AND w.topic = ANY({_SUBSCRIBED_BY.format(topic="e.topic")})
          AND (w.package_id IS NULL
               OR w.package_id IN (e.package_id, e.previous_package_id))
          AND (w.organization_id IS NULL
               OR w.organization_id IN (e.organization_id,
                                        e.previous_organization_id))
        ORDER BY e.txid, e.sequence
        LIMIT :limit
    ), queued AS (
        INSERT INTO webhook_delivery AS d
            (event_id, webhook_id, status, attempts, next_attempt_at,
             created, updated)
        SELECT id, :webhook, :pending, 0,
               CAST(:now AS timestamp)
                   + row_number() OVER (ORDER BY txid, sequence)
                     * interval '1 microsecond',
               :now, :now
        FROM wanted
        ON CONFLICT ON CONSTRAINT uq_webhook_delivery DO UPDATE
        SET status = :pending, attempts = 0, lease_until = NULL,
            next_attempt_at = EXCLUDED.next_attempt_at, updated = :now
        WHERE d.status IN (:failed, :skipped)
        RETURNING 1
    ), last AS (
        SELECT txid, sequence FROM wanted
        ORDER BY txid DESC, sequence DESC LIMIT 1
    )
    SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM wanted),
           (SELECT txid FROM last), (SELECT sequence FROM last)
    """
)


def recover(
    webhook_id: str,
    after: tuple[int, int],
    upto: tuple[int, int],
    limit: int,
) -> tuple[int, tuple[int, int]]:
    """Queue ``webhook_id``'s missed events with feed positions in (after,
    upto], at most ``limit`` of them looked at; (how many queued, the position
    up to which it looked: ``upto`` when the window is done). In the
    caller's transaction."""
    queued, looked_at, txid, sequence = model.Session.execute(
        _RECOVER,
        {
            "webhook": webhook_id,
            "after_txid": after[0],
            "after_sequence": after[1],
            "upto_txid": upto[0],
            "upto_sequence": upto[1],
            "limit": limit,
            "now": utcnow(),
            "ping": PING,
            "pending": DeliveryStatus.PENDING.value,
            "failed": DeliveryStatus.FAILED.value,
            "skipped": DeliveryStatus.SKIPPED.value,
        },
    ).one()
    return queued, ((txid, sequence) if looked_at == limit else upto)
