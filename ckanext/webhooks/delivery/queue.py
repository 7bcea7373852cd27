"""The job queue side: wake-up jobs, the RQ job itself, and the dispatcher.

RQ jobs are only wake-ups. One job delivers everything that is due, because
the stock worker forks for every job; a Redis flag (SET NX) keeps at most one
wake-up waiting. The stock ``ckan jobs worker`` runs no RQ scheduler on CKAN
2.11, so retries that fall due later are handed to a worker by
``ckan webhooks dispatch``, which also recovers events whose wake-up was lost
while Redis was down.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import time
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks import leases, notices
from ckanext.webhooks.delivery import consent
from ckanext.webhooks.delivery.claiming import due_sql
from ckanext.webhooks.delivery.listener import linger, mark_key
from ckanext.webhooks.delivery.loop import Deliverer
from ckanext.webhooks.delivery.shutdown import watching_for_stop
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import DELIVERY_CHANNEL

__all__ = [
    "deliver_pending",
    "dispatch",
    "dispatch_or_none",
    "pending_work",
    "wake_key",
    "wake_workers",
]

log = logging.getLogger(__name__)

WAKE_KEY_TTL = 60


def wake_key() -> str:
    return f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:wake"


# One round trip: no job is needed while a lingering one listens (its mark,
# listener.py), and at most one wake-up job waits (the flag, SET NX).
# 0: a job listens; 1: the flag was ours to set, enqueue; 2: a job waits.
_WAKE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 2
"""
_LISTENING, _ENQUEUE = 0, 1


@functools.cache
def _wake_script() -> Any:
    from ckan.lib.redis import connect_to_redis

    return connect_to_redis().register_script(_WAKE_SCRIPT)


def wake_workers() -> bool:
    """Queue one delivery job unless one waits or lingers already. Never raises."""
    from ckan.lib.redis import connect_to_redis

    try:
        answer = _wake_script()(
            keys=[mark_key(), wake_key()],
            args=[WAKE_KEY_TTL],
            client=connect_to_redis(),
        )
        if answer == _LISTENING:
            return True  # it sees the event (NOTIFY) or the due retry itself
        if answer == _ENQUEUE:
            tk.enqueue_job(
                deliver_pending,
                title="webhooks: deliver",
                queue=cfg.queue(),
                # RQ's limit must leave room for lingering after the work.
                rq_kwargs={"timeout": _budget() + cfg.linger_seconds() + 60},
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
    now = utcnow()
    due = model.Session.execute(
        text(f"SELECT count(*) FROM webhook_delivery WHERE {due_sql()}"),
        {"now": now},
    ).scalar()
    handshakes = consent.due_count(now)
    model.Session.commit()
    return {"events": events, "deliveries": due, "handshakes": handshakes}


def dispatch() -> dict[str, Any]:
    """Wake a worker if events wait, or retries or handshakes are due (cron /
    loop helper); disable webhooks whose lease or time to consent ran out;
    mail owners the digests of their disabled webhooks that are due."""
    now = utcnow()
    expired = leases.expire_overdue(now) + consent.expire_overdue(now)
    model.Session.commit()
    work = pending_work()
    woken = any(work.values()) and wake_workers()
    notified = notices.notify_owners()
    return {**work, "expired": expired, "woken": woken, "notified": notified}


def dispatch_or_none() -> dict[str, Any] | None:
    """``dispatch`` for a loop that must outlive outages: None, logged, when
    the database failed (Redis failures only leave ``woken`` false).

    The session is rolled back and removed, so the next round starts on a
    fresh connection (the pool drops the broken ones).
    """
    try:
        return dispatch()
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error) else ""
        log.warning(
            "webhooks: dispatch failed (%s: %s); trying again",
            type(error).__name__,
            first_line,
        )
        with contextlib.suppress(Exception):
            model.Session.rollback()
        with contextlib.suppress(Exception):
            model.Session.remove()
        return None


def _wake_listeners() -> None:
    """NOTIFY: a job lingering in another worker takes over at once."""
    try:
        model.Session.execute(text(f"NOTIFY {DELIVERY_CHANNEL}"))
        model.Session.commit()
    except Exception as error:
        with contextlib.suppress(Exception):
            model.Session.rollback()
        log.warning("webhooks: could not notify other workers: %s", error)


def _budget() -> float:
    """Seconds one job may spend delivering before it hands over."""
    return max(10.0, tk.config.get("ckan.jobs.timeout") / 2)


def deliver_pending(budget_seconds: float | None = None) -> dict[str, int]:
    """The RQ job: deliver everything that is due, linger, then return."""
    _clear_wake_flag()
    budget = budget_seconds if budget_seconds is not None else _budget()
    started = time.monotonic()
    # CKAN's 100,000-odd objects, loaded before the job, live as long as the
    # work horse: out of the collector's sight, full collections of what the
    # job makes take milliseconds, not a tenth of a second each.
    gc.freeze()
    with watching_for_stop() as stop_requested:
        deliverer = Deliverer(stop_requested=stop_requested)
        try:
            deliverer.run(budget)
            if not deliverer.gave_way and time.monotonic() < started + budget:
                # Idle, not out of time: wait for the next event here.
                linger(
                    lambda: deliverer.run(
                        max(1.0, started + budget - time.monotonic())
                    ),
                    cfg.linger_seconds(),
                    started + budget + cfg.linger_seconds(),
                    stop_requested,
                )
            if deliverer.stopped:
                _wake_listeners()  # what it gave back is due now, for them
        finally:
            deliverer.close()
            model.Session.remove()
            gc.unfreeze()  # a worker that runs jobs in its own process goes on
    stats = deliverer.stats
    if stats["sent"] or stats["skipped"]:
        log.info("webhooks: delivered %(succeeded)s, failed %(failed)s", stats)
    work = pending_work()
    if any(work.values()) or stats["throttled"]:
        wake_workers()  # out of time, gave way, or held back by a rate: hand over
    return stats
