"""The job queue side: wake-up jobs, the RQ job itself, and the dispatcher.

RQ jobs are only wake-ups. One job delivers everything that is due, because
the stock worker forks for every job; a Redis flag (SET NX) keeps at most one
wake-up waiting. The stock ``ckan jobs worker`` runs no RQ scheduler on CKAN
2.11, so retries that fall due later are handed to a worker by
``ckan webhooks dispatch``, which also recovers events whose wake-up was lost
while Redis was down.
"""

from __future__ import annotations

import logging
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks.delivery.claiming import DUE
from ckanext.webhooks.delivery.loop import Deliverer
from ckanext.webhooks.model import utcnow

__all__ = ["deliver_pending", "dispatch", "pending_work", "wake_key", "wake_workers"]

log = logging.getLogger(__name__)

WAKE_KEY_TTL = 60


def wake_key() -> str:
    return f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:wake"


def wake_workers() -> bool:
    """Queue one delivery job unless one is already waiting. Never raises."""
    from ckan.lib.redis import connect_to_redis

    try:
        if connect_to_redis().set(wake_key(), "1", nx=True, ex=WAKE_KEY_TTL):
            tk.enqueue_job(
                deliver_pending, title="webhooks: deliver", queue=cfg.queue()
            )
            return True
    except Exception as error:
        # The events are safe in the database; `ckan webhooks dispatch` will
        # hand them over once the queue is back.
        log.warning("webhooks: could not wake a worker (%s); events wait", error)
    return False


def _clear_wake_flag() -> None:
    from ckan.lib.redis import connect_to_redis

    try:
        connect_to_redis().delete(wake_key())
    except Exception as error:
        log.warning("webhooks: could not clear the wake-up flag: %s", error)


def pending_work() -> dict[str, int]:
    """How many events wait to be expanded and how many deliveries are due."""
    events = model.Session.execute(
        text("SELECT count(*) FROM webhook_event WHERE NOT expanded")
    ).scalar()
    due = model.Session.execute(
        text(f"SELECT count(*) FROM webhook_delivery WHERE {DUE}"),
        {"now": utcnow()},
    ).scalar()
    model.Session.commit()
    return {"events": events, "deliveries": due}


def dispatch() -> dict[str, Any]:
    """Wake a worker if events wait or retries are due (cron / loop helper)."""
    work = pending_work()
    woken = bool(work["events"] or work["deliveries"]) and wake_workers()
    return {**work, "woken": woken}


def deliver_pending(budget_seconds: float | None = None) -> dict[str, int]:
    """The RQ job: deliver everything that is due, then return."""
    _clear_wake_flag()
    if budget_seconds is None:
        budget_seconds = max(10.0, tk.config.get("ckan.jobs.timeout") / 2)
    deliverer = Deliverer()
    try:
        stats = deliverer.run(budget_seconds)
    finally:
        deliverer.close()
        model.Session.remove()
    if stats["sent"] or stats["skipped"]:
        log.info("webhooks: delivered %(succeeded)s, failed %(failed)s", stats)
    if pending_work()["deliveries"] or stats["throttled"]:
        wake_workers()  # out of time, or held back by a rate: hand over
    return stats
