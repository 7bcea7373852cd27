"""How work is claimed: due deliveries, taken with a lease so nothing is sent twice.

A claim is ``FOR UPDATE SKIP LOCKED`` plus a lease (``lease_until``): several
workers share the load without sending anything twice, and a worker that dies
only delays its claimed deliveries until the lease runs out. The lease always
outlasts the time a claimed delivery may take: waiting for a free sender, one
request under the transport's deadline, and recording.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools

import ckan.model as model
from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from ckanext.webhooks.control import paused_sql
from ckanext.webhooks.delivery.consent import held_sql
from ckanext.webhooks.model import Webhook, WebhookEvent, utcnow
from ckanext.webhooks.vocabulary import DeliveryStatus

__all__ = [
    "Claim",
    "claim_due",
    "due_sql",
    "lease_for",
    "release",
    "seconds_until_next_due",
]


# Deliveries a worker may take now (the SQL of "due", shared with the
# dispatcher's check): pending, due, not leased, not held for their
# receiver's consent (delivery/consent.py), and delivery not paused
# (control.py): while paused nothing is due, so nothing is claimed or woken.
def due_sql() -> str:
    return f"""
        webhook_delivery.status = '{DeliveryStatus.PENDING.value}'
        AND webhook_delivery.next_attempt_at <= :now
        AND (webhook_delivery.lease_until IS NULL
             OR webhook_delivery.lease_until < :now)
        {held_sql("webhook_delivery")}
        AND {paused_sql()}
    """


@functools.lru_cache(maxsize=4)  # one per verification mode
def _claim_statement(due: str) -> TextClause:
    return text(
        f"""
        UPDATE webhook_delivery d
        SET lease_until = :lease, attempts = d.attempts + 1, updated = :now
        FROM (
            SELECT id FROM webhook_delivery
            WHERE {due}
            ORDER BY next_attempt_at, id
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE d.id = due.id
        RETURNING d.id, d.event_id, d.webhook_id, d.attempts, d.sequence,
                  d.filter, d.coalesced, d.changes
        """
    )


# Back to the queue without an attempt: used for deliveries held back by a
# rate limit, which wait rather than being dropped.
_RELEASE = text(
    """
    UPDATE webhook_delivery d
    SET lease_until = NULL, attempts = d.attempts - 1,
        next_attempt_at = u.not_before, updated = :now
    FROM unnest(CAST(:ids AS bigint[]), CAST(:not_before AS timestamp[]))
        AS u(id, not_before)
    WHERE d.id = u.id
    """
)


@dataclasses.dataclass
class Claim:
    """One claimed delivery: the event, its webhook, which attempt this is,
    the webhook's number for it (None until it is first sent), and what the
    delivery adds to the event (its filter label, the updates it stands for:
    ``payload.Shape``)."""

    delivery_id: int
    event: WebhookEvent
    webhook: Webhook
    attempt: int
    sequence: int | None = None
    filter: str | None = None
    coalesced: int = 1
    changes: list[str] | None = None
    # The request's headers and body once rendered, for the delivery log.
    sent: tuple[dict[str, str], bytes] | None = None


def lease_for(deadline_seconds: float) -> datetime.timedelta:
    """A lease that outlasts one wait for a sender, one request and recording."""
    return datetime.timedelta(seconds=3 * deadline_seconds + 5)


def claim_due(limit: int, lease: datetime.timedelta) -> list[Claim]:
    """Claim up to ``limit`` due deliveries, oldest first; commit the claim."""
    now = utcnow()
    rows = model.Session.execute(
        _claim_statement(due_sql()), {"now": now, "lease": now + lease, "limit": limit}
    ).all()
    model.Session.commit()
    if not rows:
        return []
    events = {
        e.id: e
        for e in model.Session.query(WebhookEvent).filter(
            WebhookEvent.id.in_({r.event_id for r in rows})
        )
    }
    hooks = {
        w.id: w
        for w in model.Session.query(Webhook).filter(
            Webhook.id.in_({r.webhook_id for r in rows})
        )
    }
    return [
        Claim(
            r.id,
            events[r.event_id],
            hooks[r.webhook_id],
            r.attempts,
            r.sequence,
            r.filter,
            r.coalesced,
            r.changes,
        )
        for r in rows
        if r.event_id in events and r.webhook_id in hooks
    ]


def release(
    claims: list[Claim], not_before: datetime.datetime, spacing: float = 0.0
) -> None:
    """Give claimed deliveries back, unattempted, due again at ``not_before``,
    each ``spacing`` seconds after the one before: a long queue held back by a
    slow ceiling is then not claimed and given back whole at every slot."""
    if not claims:
        return
    step = datetime.timedelta(seconds=spacing)
    model.Session.execute(
        _RELEASE,
        {
            "ids": [c.delivery_id for c in claims],
            "not_before": [not_before + n * step for n in range(len(claims))],
            "now": utcnow(),
        },
    )
    model.Session.commit()


_SOONEST = f"""
    SELECT min(next_attempt_at) FROM webhook_delivery
    WHERE status = '{DeliveryStatus.PENDING.value}'
      AND (lease_until IS NULL OR lease_until < :now)
"""


def seconds_until_next_due() -> float | None:
    """How long until the next pending delivery falls due (None: none pending)."""
    soonest = model.Session.execute(
        text(_SOONEST + held_sql("webhook_delivery")), {"now": utcnow()}
    ).scalar()
    model.Session.commit()
    if soonest is None:
        return None
    return max(0.0, (soonest - utcnow()).total_seconds())
