"""Operator controls every process sees: the delivery pause and the heartbeat.

Both are rows of ``webhook_control`` in PostgreSQL. A pause must survive
restarts and reach every worker at once, so it is read by the claim statement
itself (``paused_sql``): a worker that claims after the pause commits claims
nothing, with no cache to go stale. Capture and expansion go on while paused,
so events keep turning into deliveries that wait, unsent and not lost.

The heartbeat (``worker_seen``) is one upsert when a delivery job starts
and every 30 s while it works (``Deliverer._housekeeping``), never per
delivery: cheap, durable, and readable in the same query as the backlog.
Delivery jobs come through Redis (RQ), so while Redis is down no job starts
and the heartbeat ages; that is what it is meant to show.
"""

from __future__ import annotations

import datetime
import logging

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks.model import utcnow

__all__ = [
    "PAUSED",
    "WORKER_SEEN",
    "pause",
    "paused",
    "paused_sql",
    "resume",
    "touch_worker_seen",
]

log = logging.getLogger(__name__)

PAUSED = "delivery_paused"
WORKER_SEEN = "worker_seen"

_SET = text(
    """
    INSERT INTO webhook_control (name, value, updated)
    VALUES (:name, :value, :now)
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value,
                                     updated = EXCLUDED.updated
    """
)


def paused_sql() -> str:
    """An SQL condition, true while delivery is not paused."""
    return f"NOT EXISTS (SELECT 1 FROM webhook_control WHERE name = '{PAUSED}')"


def paused() -> dict[str, str | datetime.datetime | None] | None:
    """Who paused delivery and when; None while it runs."""
    row = model.Session.execute(
        text("SELECT value, updated FROM webhook_control WHERE name = :name"),
        {"name": PAUSED},
    ).first()
    return {"by": row.value, "since": row.updated} if row else None


def pause(by: str | None) -> None:
    """Pause all delivery (the caller commits). Pausing again keeps the first
    time, so the page says how long delivery has really been paused."""
    model.Session.execute(
        text(
            """
            INSERT INTO webhook_control (name, value, updated)
            VALUES (:name, :value, :now) ON CONFLICT (name) DO NOTHING
            """
        ),
        {"name": PAUSED, "value": by, "now": utcnow()},
    )


def resume() -> None:
    """Resume delivery (the caller commits, then wakes a worker)."""
    model.Session.execute(
        text("DELETE FROM webhook_control WHERE name = :name"), {"name": PAUSED}
    )


def touch_worker_seen() -> None:
    """Note that a worker took a delivery job now; never raises."""
    try:
        model.Session.execute(
            _SET, {"name": WORKER_SEEN, "value": None, "now": utcnow()}
        )
        model.Session.commit()
    except Exception as error:
        model.Session.rollback()
        log.warning("webhooks: could not note that a worker took a job: %s", error)
