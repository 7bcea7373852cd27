"""Between bursts a delivery job listens instead of ending: latency without a fork.

The stock worker forks a work horse and starts CKAN for every job, about
0.4 s before the first request goes out. So a job that has delivered
everything stays alive for ``ckanext.webhooks.linger_seconds`` and waits on
PostgreSQL ``LISTEN``: capture sends ``NOTIFY`` in the user's own
transaction, so the job wakes exactly when an event commits.

While it waits it keeps a short-lived Redis mark, and wake-ups skip
enqueueing a job as long as the mark is there. While it delivers there is no
mark, so a second worker is woken for a burst. It gives way the moment
another job waits on its queue: CKAN's other jobs never starve behind it.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk

from ckanext.webhooks import config as cfg
from ckanext.webhooks.delivery.claiming import seconds_until_next_due
from ckanext.webhooks.vocabulary import DELIVERY_CHANNEL

__all__ = [
    "Listener",
    "linger",
    "mark_key",
    "others_waiting",
    "someone_listens",
]

MARK_MS = 2000  # a listener that died stops counting after this
POLL_SECONDS = 0.5  # how often a waiting job looks at its queue


def mark_key() -> str:
    """The Redis key a lingering job keeps alive while it listens."""
    return f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:listening"


def someone_listens() -> bool:
    """A lingering job will see the next event: no job need be enqueued."""
    from ckan.lib.redis import connect_to_redis

    try:
        return bool(connect_to_redis().exists(mark_key()))
    except Exception:
        return False


def others_waiting() -> bool:
    """A job other than a delivery wake-up waits on our queue: give way."""
    from ckan.lib.jobs import get_queue

    try:
        queue = get_queue(cfg.queue())
        for job_id in queue.get_job_ids(0, 20):
            job = queue.fetch_job(job_id)
            if job is not None and not job.func_name.endswith(".deliver_pending"):
                return True
    except Exception:
        return False
    return False


class Listener:
    """A LISTEN connection of its own, outside the ORM session.

    It is switched to autocommit and keeps listening, so it never goes back
    to the pool: ``close`` discards it.
    """

    def __init__(self, engine: Any = None) -> None:
        self._raw = (engine or model.meta.engine).raw_connection()
        self._conn = (
            getattr(self._raw, "dbapi_connection", None) or self._raw.connection
        )
        self._conn.autocommit = True
        with self._conn.cursor() as cursor:
            cursor.execute(f"LISTEN {DELIVERY_CHANNEL}")

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``, holding the mark; True if an event committed."""
        from ckan.lib.redis import connect_to_redis

        # Without Redis the wake-ups just enqueue jobs as before.
        with contextlib.suppress(Exception):
            connect_to_redis().set(mark_key(), "1", px=MARK_MS)
        readable, _, _ = select.select([self._conn], [], [], seconds)
        if readable:
            self._conn.poll()
        woken = bool(self._conn.notifies)
        self._conn.notifies.clear()
        return woken

    def close(self) -> None:
        from ckan.lib.redis import connect_to_redis

        with contextlib.suppress(Exception):
            connect_to_redis().delete(mark_key())
        self._raw.invalidate()  # closed for good, not returned to the pool


def linger(
    deliver: Any,
    seconds: float,
    deadline: float,
    stop_requested: Callable[[], bool] = lambda: False,
) -> None:
    """Listen for up to ``seconds`` of quiet (and never past ``deadline``),
    calling ``deliver()`` whenever an event commits; stop early for others
    and when the worker stops."""
    if seconds <= 0:
        return
    listener = Listener()
    try:
        quiet_until = time.monotonic() + seconds
        while (
            time.monotonic() < min(quiet_until, deadline)
            and not stop_requested()
            and not others_waiting()
        ):
            # An event committed, or a retry fell due (no dispatcher needed).
            if listener.wait(POLL_SECONDS) or seconds_until_next_due() == 0:
                deliver()
                quiet_until = time.monotonic() + seconds
    finally:
        listener.close()
