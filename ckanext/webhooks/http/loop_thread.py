"""One asyncio event loop on a thread of its own, fed from other threads.

A delivery job's thread claims, renders and records; the loop thread carries
every request, so thousands of slow receivers cost a socket each, not a
thread. ``submit`` hands a coroutine function and its arguments over and
returns a ``concurrent.futures.Future``. Calls made in a row are handed over
together, with one wake-up of the loop, so the submitting thread pays little
per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")
Work = Callable[..., Coroutine[Any, Any, Any]]
Args = tuple[Any, ...]


class LoopThread:
    """Starts its loop lazily (``on_start`` runs first, with the loop's new
    state to make) and stops it in ``close``."""

    def __init__(self, name: str, on_start: Callable[[], None]) -> None:
        self.name = name
        self._on_start = on_start
        self._lock = threading.Lock()  # guards the loop and the hand-over
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._handed: list[tuple[concurrent.futures.Future[Any], Work, Args]] = []
        self._wake_pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, work: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> concurrent.futures.Future[T]:
        """Run ``work(*args)`` on the loop; the future gets its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            loop = self._running_loop()
            self._handed.append((future, work, args))
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            loop.call_soon_threadsafe(self._start_handed)
        return future

    def close(self, last: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Cancel what runs, then run ``last`` on the loop, then stop it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shut_down(last), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on its own thread if need be (the lock is held)."""
        if self._loop is None:
            self._on_start()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name=self.name, daemon=True
            )
            self._thread.start()
        return self._loop

    # -- on the loop -----------------------------------------------------

    def _start_handed(self) -> None:
        with self._lock:
            handed, self._handed = self._handed, []
            self._wake_pending = False
        for future, work, args in handed:
            if future.set_running_or_notify_cancel():
                task = asyncio.ensure_future(self._run(future, work, args))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(
        future: concurrent.futures.Future[Any], work: Work, args: Args
    ) -> None:
        try:
            result = await work(*args)
        except asyncio.CancelledError:  # the loop is closing
            future.set_exception(concurrent.futures.CancelledError())
            raise
        except BaseException as error:
            future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        future.set_result(result)

    async def _shut_down(self, last: Callable[[], Coroutine[Any, Any, None]]) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await last()
