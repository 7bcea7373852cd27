"""A webhook's delivery log, as attempts or as events with their attempts.

Grouped by event, the log pages over deliveries ordered by their latest
attempt, so that a burst of test pings pushes older events onto later pages
rather than out of reach, and the outcome filter picks events by how their
latest attempt went. Both read along ``ix_webhook_attempt_webhook``.
"""

from __future__ import annotations

from typing import Any

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks.logic.dictization import attempt_dictize
from ckanext.webhooks.model import WebhookAttempt, WebhookDelivery

__all__ = ["attempt_page", "event_page"]

_LATEST_PER_DELIVERY = text(
    """
    SELECT delivery_id FROM (
        SELECT DISTINCT ON (delivery_id) delivery_id, id, outcome
        FROM webhook_attempt
        WHERE webhook_id = :webhook_id
        ORDER BY delivery_id, id DESC
    ) AS latest
    WHERE CAST(:outcome AS text) IS NULL OR outcome = :outcome
    ORDER BY id DESC
    OFFSET :offset LIMIT :limit
    """
)


def _deliveries(ids: set[int]) -> dict[int, WebhookDelivery]:
    if not ids:
        return {}
    found = model.Session.query(WebhookDelivery).filter(WebhookDelivery.id.in_(ids))
    return {item.id: item for item in found}


def attempt_page(
    webhook_id: str, outcome: str | None, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Attempts, newest first."""
    query = model.Session.query(WebhookAttempt).filter(
        WebhookAttempt.webhook_id == webhook_id
    )
    if outcome:
        query = query.filter(WebhookAttempt.outcome == outcome)
    attempts = query.order_by(WebhookAttempt.id.desc()).offset(offset).limit(limit)
    attempts = list(attempts)
    deliveries = _deliveries({a.delivery_id for a in attempts})
    return [attempt_dictize(a, deliveries.get(a.delivery_id)) for a in attempts]


def event_page(
    webhook_id: str, outcome: str | None, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Events, the one attempted last first, each with its attempts, newest
    first."""
    rows = model.Session.execute(
        _LATEST_PER_DELIVERY,
        {
            "webhook_id": webhook_id,
            "outcome": outcome,
            "offset": offset,
            "limit": limit,
        },
    )
    order = [row.delivery_id for row in rows]
    deliveries = _deliveries(set(order))
    attempts: dict[int, list[WebhookAttempt]] = {id_: [] for id_ in order}
    if order:
        for attempt in (
            model.Session.query(WebhookAttempt)
            .filter(WebhookAttempt.delivery_id.in_(order))
            .order_by(WebhookAttempt.id.desc())
        ):
            attempts[attempt.delivery_id].append(attempt)
    page = []
    for delivery_id in order:
        item = deliveries[delivery_id]
        entries = [attempt_dictize(a, item) for a in attempts[delivery_id]]
        page.append(
            {
                "delivery_id": str(delivery_id),
                "event_id": item.event_id,
                "topic": entries[0]["topic"],
                "status": item.status,
                "next_attempt_at": entries[0]["next_attempt_at"],
                "last_attempt_at": entries[0]["created"],
                "attempts": entries,
            }
        )
    return page
