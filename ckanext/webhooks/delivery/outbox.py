"""From outbox to queue: each new event becomes one delivery per matching webhook.

Events are claimed with ``FOR UPDATE SKIP LOCKED`` so that workers expanding
at the same time split the events between them; the matching webhooks come
from the one SQL definition shared with capture (``matching.py``).
"""

from __future__ import annotations

import datetime

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks.matching import filters_sql, label_sql, matching_webhooks_sql
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.topics import subscriptions_sql
from ckanext.webhooks.vocabulary import DATA_CHANGED, PING, DeliveryStatus

__all__ = ["COALESCIBLE", "expand_events", "recover"]

# The topics a subscription may name to receive an event of topic ``{topic}``.

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
                  e.previous_package_id, e.previous_organization_id, e.sequence,
                  e.before, e.after
    ), inserted AS (
        INSERT INTO webhook_delivery
            (event_id, webhook_id, status, attempts, next_attempt_at,
             created, updated, filter)
        SELECT m.id, w.id, :pending, 0,
               -- An update opens a window for more of its entity (coalescing).
               CASE WHEN m.topic = ANY(:coalescible) THEN :now + :window
                    ELSE :now END,
               :now, :now, w.filter
        FROM marked m
        CROSS JOIN LATERAL ({
        matching_webhooks_sql(
            topics=subscriptions_sql("m.topic"),
            package_id="m.package_id",
            previous_package_id="m.previous_package_id",
            organization_id="m.organization_id",
            previous_organization_id="m.previous_organization_id",
            before="m.before",
            after="m.after",
        )
    }) w
        -- An event's deliveries get neighbouring ids, so they are claimed
        -- together and share one view of the entity per batch.
        ORDER BY m.sequence, w.id
        ON CONFLICT ON CONSTRAINT uq_webhook_delivery DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked), ARRAY(SELECT id FROM marked)
    """
)

# The updates of one entity that wait in their window for one webhook become
# one delivery: the latest event, due when the first one was, standing for
# all of them with the union of their changes and where the dataset stood
# with the webhook's filters before the first and after the last (entered,
# left, matched); the others are marked
# coalesced (kept, so that recovery does not send them again). A create or
# delete of the entity closes its open windows at once, so that it never
# overtakes the update before it.
_COALESCE = text(
    f"""
    WITH touched AS (
        SELECT DISTINCT d.webhook_id, e.entity_id
        FROM webhook_delivery d JOIN webhook_event e ON e.id = d.event_id
        WHERE d.event_id = ANY(:events) AND e.entity_type IN ('dataset', 'resource')
    ), open AS (
        SELECT d.id, e.topic, d.coalesced, COALESCE(d.changes, e.changes) AS changes,
               d.filter, first_value(d.filter) OVER same_in_order AS first_filter,
               max(d.id) OVER same AS keeper,
               min(d.next_attempt_at) OVER same AS due,
               sum(d.coalesced) OVER same AS total,
               count(*) OVER same AS n,
               bool_or(NOT e.topic = ANY(:coalescible)) OVER entity AS closing
        FROM touched t
        JOIN webhook_delivery d ON d.webhook_id = t.webhook_id
             AND d.status = '{DeliveryStatus.PENDING.value}'
             AND d.sequence IS NULL AND d.attempts = 0
             AND d.next_attempt_at >= :now
        JOIN webhook_event e ON e.id = d.event_id AND e.entity_id = t.entity_id
        WINDOW same AS (PARTITION BY d.webhook_id, e.entity_id, e.topic),
               same_in_order AS (same ORDER BY d.id),
               entity AS (PARTITION BY d.webhook_id, e.entity_id)
    ), kept AS (
        SELECT o.keeper, ARRAY(
            SELECT DISTINCT c FROM open o2, unnest(o2.changes) c
            WHERE o2.keeper = o.keeper ORDER BY c) AS changes
        FROM open o WHERE o.n > 1 AND o.id = o.keeper
    ), merged AS (
        UPDATE webhook_delivery d
        SET status = CASE WHEN d.id = o.keeper THEN d.status
                          ELSE '{DeliveryStatus.COALESCED.value}' END,
            coalesced = CASE WHEN d.id = o.keeper THEN o.total ELSE d.coalesced END,
            changes = CASE WHEN d.id = o.keeper THEN k.changes ELSE d.changes END,
            -- In the set before the first update and after the last?
            filter = CASE WHEN d.id <> o.keeper OR o.n = 1 THEN d.filter
                WHEN o.first_filter IN ('matched', 'left')
                     AND d.filter IN ('matched', 'entered') THEN 'matched'
                WHEN d.filter IN ('matched', 'entered') THEN 'entered'
                WHEN o.first_filter IN ('matched', 'left') THEN 'left'
                ELSE d.filter END,
            next_attempt_at = CASE WHEN o.closing THEN :now ELSE o.due END,
            updated = :now
        FROM open o LEFT JOIN kept k ON k.keeper = o.keeper
        WHERE d.id = o.id AND o.topic = ANY(:coalescible) AND (o.n > 1 OR o.closing)
        RETURNING d.status
    )
    SELECT count(*) FILTER (WHERE status = '{DeliveryStatus.COALESCED.value}')
    FROM merged
    """
)

# Topics whose deliveries may be merged: updates, never creates or deletes.
COALESCIBLE = ["dataset/update", "resource/update", DATA_CHANGED]


def expand_events(limit: int = 500) -> int:
    """Turn new events into one delivery per matching webhook; return events.

    With ``ckanext.webhooks.coalesce_seconds`` an update's deliveries wait
    that long for more updates of the same entity, merged into them."""
    window = datetime.timedelta(seconds=cfg.coalesce_seconds())
    total = 0
    while True:
        now = utcnow()
        events, ids = model.Session.execute(
            _EXPAND,
            {
                "limit": limit,
                "now": now,
                "pending": DeliveryStatus.PENDING.value,
                "window": window,
                "coalescible": COALESCIBLE,
            },
        ).one()
        if window and ids:
            model.Session.execute(
                _COALESCE, {"events": ids, "now": now, "coalescible": COALESCIBLE}
            )
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
        SELECT e.id, e.txid, e.sequence,
               {label_sql("e.before", "e.after")} AS filter
        FROM webhook_event e, webhook w
        WHERE w.id = :webhook
          AND (e.txid, e.sequence) > (:after_txid, :after_sequence)
          AND (e.txid, e.sequence) <= (:upto_txid, :upto_sequence)
          AND e.topic != :ping AND e.entity_type != 'webhook'
          AND w.topics && {subscriptions_sql("e.topic")}
          AND (w.package_id IS NULL
               OR w.package_id IN (e.package_id, e.previous_package_id))
          AND (w.organization_id IS NULL
               OR w.organization_id IN (e.organization_id,
                                        e.previous_organization_id))
          AND ({filters_sql("e.before")} OR {filters_sql("e.after")})
        ORDER BY e.txid, e.sequence
        LIMIT :limit
    ), queued AS (
        INSERT INTO webhook_delivery AS d
            (event_id, webhook_id, status, attempts, next_attempt_at,
             created, updated, filter)
        SELECT id, :webhook, :pending, 0,
               CAST(:now AS timestamp)
                   + row_number() OVER (ORDER BY txid, sequence)
                     * interval '1 microsecond',
               :now, :now, filter
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
