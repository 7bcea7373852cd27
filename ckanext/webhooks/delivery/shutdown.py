"""Noticing that the worker is asked to stop, so a job ends in seconds.

The stock ``ckan jobs worker`` (RQ 1.16 on CKAN 2.11, RQ 2.x on 2.12)
forks a work horse per job in a process group of its own (``os.setsid``
in RQ 1.16, ``os.setpgrp`` in 2.x). On SIGTERM the worker only notes the
request (``shutdown_requested_date`` in its Redis hash) and waits for the
horse, which gets no signal: a job that lingers would keep it waiting for
minutes. A later SIGTERM kills the horse.

So a delivery job asks, once a loop round, whether it should stop: when the
horse itself received SIGTERM (systemd's default ``KillMode=control-group``
signals every process of the service) or when its worker recorded a stop
request.
Then it starts nothing new, gives back what it claimed but has not sent,
finishes what is in flight (each request has the transport's deadline) and
returns, and the deliveries it gave back are due at once for other workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["StopRequest", "watching_for_stop"]

REDIS_CHECK_INTERVAL = 0.5  # seconds between looks at the worker's hash


class StopRequest:
    """Whether this job should stop: a SIGTERM here or a stop request of the
    worker that forked it (looked up at most every half second)."""

    def __init__(self) -> None:
        self.signalled = False
        self._worker_stopping = False
        self._checked_at = 0.0

    def __call__(self) -> bool:
        if self.signalled or self._worker_stopping:
            return True
        if time.monotonic() - self._checked_at >= REDIS_CHECK_INTERVAL:
            self._checked_at = time.monotonic()
            self._worker_stopping = _worker_asked_to_stop()
        return self._worker_stopping


def _worker_asked_to_stop() -> bool:
    """The RQ worker that runs this job has recorded a warm shutdown."""
    worker = os.environ.get("RQ_WORKER_ID")  # set by RQ in the work horse
    if not worker:
        return False
    from ckan.lib.redis import connect_to_redis
    from rq.worker import Worker

    try:
        key = Worker.redis_worker_namespace_prefix + worker
        return bool(connect_to_redis().hexists(key, "shutdown_requested_date"))
    except Exception:
        return False  # Redis away: only a signal stops the job early


@contextlib.contextmanager
def watching_for_stop() -> Iterator[StopRequest]:
    """A StopRequest, with SIGTERM caught for the duration (in the main
    thread only; the previous handler is called too, and put back after).

    In a work horse the previous handler is the default, which would end
    the process with its requests in flight and its claims leased."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def note(signum: int, frame: Any) -> None:
        stop.signalled = True
        if callable(previous):  # a worker running jobs in its own process
            previous(signum, frame)

    previous = signal.signal(signal.SIGTERM, note)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
