"""Waking delivery after a commit, without holding up the request.

Once a transaction that recorded wanted events commits, a delivery job must
be woken (``queue.wake_workers``: a Redis round trip, and an RQ enqueue when
no job waits or lingers). In a web request that would be the plugin's only
network I/O, paid by the user who saved a dataset, and held up as long as
Redis is slow. So a thread of the web process does it: the request only
notes the ask, and the thread wakes workers once for however many commits
asked meanwhile, then rests briefly (``_REST_SECONDS``) so that a burst of
saves costs a few calls a second.

Only a request the web server dispatched counts (Flask's ``request_started``;
not a request context pushed by a CLI command or a job). Everywhere else it
is done at once: such a process may end right after its commit, an RQ work
horse by ``os._exit``, which runs no exit handlers. So is it where threads
do not run between requests (uWSGI without ``enable-threads``), or when
``ckanext.webhooks.wake_in_background`` is off.

Nothing is lost if a wake-up is: a job that lingers is woken by PostgreSQL's
NOTIFY at commit anyway, and ``ckan webhooks dispatch`` hands waiting events
to a worker.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time

from flask import g, has_request_context, request_started

from ckanext.webhooks import config as cfg

__all__ = ["flush", "wake_soon", "watch_requests"]

log = logging.getLogger(__name__)

# How long a process that exits waits for a wake-up it has promised.
_EXIT_WAIT_SECONDS = 2.0

# The thread rests this long after each wake-up; asks made meanwhile are
# answered by one wake-up at the end of the rest. Each wake-up cost the
# process's request threads about a millisecond of CPU on a 2-CPU machine
# (they hand the interpreter's lock to the waker and back; see
# docs/performance.rst, the eighth pass), and one that follows another
# within a job's start-up (a fork of the stock worker, about 0.4 s) finds a
# job waiting or listening: a lingering job is woken by NOTIFY at the commit
# whatever the thread does. So the rest delays only the queueing of a new
# job (a second one for a burst, or one after a lingering job ended), by at
# most a start-up. A burst of saves (a harvest, a bulk edit) costs Redis
# about three calls a second per process.
_REST_SECONDS = 0.4


class _Waker:
    """A daemon thread that calls ``queue.wake_workers`` when asked, with
    the asks made meanwhile, or while it rests after a call, coalesced into
    one call."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush, _EXIT_WAIT_SECONDS)

    def _reset(self) -> None:
        # New locks in a forked child: the parent's may have been held by a
        # thread that the child does not have.
        self._changed = threading.Condition()
        self._asked = 0  # asks so far
        self._answered = 0  # asks covered by a finished wake-up
        self._thread: threading.Thread | None = None

    def ask(self) -> None:
        with self._changed:
            self._asked += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="webhooks-waker", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every ask made so far is answered; False on timeout."""
        with self._changed:
            target = self._asked
            return self._changed.wait_for(lambda: self._answered >= target, timeout)

    def _run(self) -> None:
        from ckanext.webhooks.delivery import queue

        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._asked > self._answered)
                target = self._asked
            try:
                queue.wake_workers()  # logs its own failures
            except Exception:
                log.exception("webhooks: the waker failed; events wait")
            with self._changed:
                self._answered = target
                self._changed.notify_all()
            time.sleep(_REST_SECONDS)


_WAKER = _Waker()


def _threads_run_between_requests() -> bool:
    """False under uWSGI without threads: it keeps the interpreter's lock
    while it waits for a request, so a thread would run only during one."""
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return True
    options = getattr(uwsgi, "opt", {})
    enabled = options.get("enable-threads") or options.get("threads")
    return enabled not in (None, False, b"", b"0", b"false", "", "0", "false")


# Set on flask.g when the web server dispatches a request.
_DISPATCHED = "webhooks_dispatched"


def _note_dispatch(sender: object, **extra: object) -> None:
    setattr(g, _DISPATCHED, True)


def watch_requests() -> None:
    """Note the requests the web server dispatches (once is enough)."""
    request_started.connect(_note_dispatch, weak=False)


def _in_served_request() -> bool:
    return has_request_context() and g.get(_DISPATCHED, False)


def wake_soon() -> None:
    """Wake delivery after this commit: from the web process's thread in a
    request it serves, at once elsewhere."""
    if (
        _in_served_request()
        and cfg.wake_in_background()
        and _threads_run_between_requests()
    ):
        _WAKER.ask()
    else:
        from ckanext.webhooks.delivery import queue

        queue.wake_workers()


def flush(timeout: float = 10.0) -> bool:
    """Wait for the wake-ups asked of this process's thread so far (tests,
    and a process about to exit); False if they did not finish in time."""
    return _WAKER.flush(timeout)
