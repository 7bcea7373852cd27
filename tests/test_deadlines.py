"""``ckanext.webhooks.timeout`` is a deadline for the whole request.

A receiver that answers one byte a second never trips a per-read timeout, so
without a deadline it holds a ping (and the web request waiting on it) or a
worker's delivery for as long as it likes. These slow-loris receivers are
real sockets on 127.0.0.1 that would need a minute to finish their answer;
the deadline is set to 2 s (so a byte a second never trips a per-read
timeout) and the bound checked is a generous 15 s. The
receiver notes when the sender gave up on the connection: that is what is
measured, not the test's own clock around a subprocess.
"""

from __future__ import annotations

import contextvars
import datetime
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ckan.model as model
import pytest
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.delivery import wake_workers
from tests.helpers import Site

DRIP_SECONDS = 60  # how long the receivers would take to finish answering
BOUND = 15.0  # how long a 2 s deadline may hold a request, generously
STAGES = ["headers", "body"]


class SlowLoris:
    """Answers each POST with its status line, then one byte a second.

    ``stage`` "headers": the header block never ends (one header byte a
    second); "body": the headers come at once, announcing a body that then
    arrives one byte a second.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.connections: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def _serve(self, conn: socket.socket) -> None:
        record: dict[str, Any] = {"accepted": time.monotonic(), "closed": None}
        with self._lock:
            self.connections.append(record)
        try:
            conn.settimeout(10)
            record["request"] = self._read_request(conn)
            if self.stage == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                finish = b"\r\nContent-Length: 2\r\n\r\nok"
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n" % DRIP_SECONDS
                )
                finish = b""
            for _ in range(DRIP_SECONDS):
                if self._stop.is_set():
                    break
                readable, _, _ = select.select([conn], [], [], 1.0)
                if readable and not conn.recv(4096):
                    record["closed"] = time.monotonic()  # the sender hung up
                    return
                conn.sendall(b"a")
            else:
                conn.sendall(finish)
        except OSError:
            record["closed"] = time.monotonic()
        finally:
            conn.close()

    def wait_for_connection(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.connections:
                    return self.connections[0]
            time.sleep(0.05)
        return None

    def held(self, record: dict[str, Any]) -> float | None:
        """Seconds the sender stayed on the connection; None while it still does."""
        if record["closed"] is None:
            return None
        return record["closed"] - record["accepted"]

    def wait_until_dropped(self, record: dict[str, Any], bound: float) -> float | None:
        """Poll until the sender hangs up (or ``bound`` seconds after it connected)."""
        while time.monotonic() < record["accepted"] + bound + 1:
            held = self.held(record)
            if held is not None:
                return held
            time.sleep(0.05)
        return self.held(record)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture(params=STAGES)
def slow(request) -> Iterator[SlowLoris]:
    receiver = SlowLoris(request.param)
    try:
        yield receiver
    finally:
        receiver.stop()


def within(bound: float, call: Callable[[], Any], on_overrun: Callable[[], None]):
    """Run ``call`` in a thread (with this request context); (done, result).

    If it is still running after ``bound`` seconds, ``on_overrun`` (which
    should make it return) is called before waiting for it to end.
    """
    context = contextvars.copy_context()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = context.run(call)
        except BaseException as error:  # handed to the test below
            box["error"] = error
        finally:
            model.Session.remove()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    done = not thread.is_alive()
    if not done:
        on_overrun()
        thread.join(30)
    if "error" in box:
        raise box["error"]
    return done, box.get("result")


def anonymous_webhook(address: str, topic: str = "*") -> str:
    return helpers.call_action(
        "webhook_create", context={"user": ""}, topic=topic, address=address
    )


def says_deadline(error: str | None) -> bool:
    return bool(error) and any(
        word in error.lower() for word in ("deadline", "timeout", "timed out")
    )


@pytest.mark.ckan_config("ckanext.webhooks.timeout", 2)
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_a_ping_ends_at_the_deadline(slow):
    hook = anonymous_webhook(slow.url + "/ping")
    admin = factories.Sysadmin()
    done, result = within(
        BOUND,
        lambda: helpers.call_action(
            "webhook_test", context={"user": admin["name"]}, id=hook
        ),
        slow.stop,
    )
    assert done, f"webhook_test still held by the slow receiver after {BOUND} s"
    assert result["success"] is False
    assert says_deadline(result["error"]), result
    [record] = slow.connections
    assert slow.held(record) is not None and slow.held(record) < BOUND
    model.Session.commit()  # see what the thread wrote
    [entry] = helpers.call_action(
        "webhook_delivery_list", context={"user": admin["name"]}, id=hook
    )
    assert says_deadline(entry["error"]), entry


def _delivery_row(hook: str) -> Any:
    row = model.Session.execute(
        text(
            "SELECT status, attempts, next_attempt_at FROM webhook_delivery "
            "WHERE webhook_id = :id"
        ),
        {"id": hook},
    ).one()
    model.Session.commit()
    return row


@pytest.mark.usefixtures("with_plugins", "clean_db", "clean_queues")
def test_a_worker_delivery_ends_at_the_deadline_and_is_retried_later(slow):
    """A stock ``ckan jobs worker --burst``: one attempt, cut off by the
    deadline, logged as such, and due again only by the retry schedule."""
    site = Site(
        **{
            "ckanext.webhooks.timeout": 2,
            "ckanext.webhooks.retry_schedule": "300",
        }
    )
    hook = anonymous_webhook(slow.url + "/delivery", topic="dataset/create")
    factories.Dataset()
    worker = site.popen("jobs", "worker", "--burst")
    try:
        record = slow.wait_for_connection(90)
        assert record is not None, "the worker never sent the delivery"
        held = slow.wait_until_dropped(record, BOUND)
        assert held is not None, f"the worker still held the request after {BOUND} s"
        worker.wait(60)
    finally:
        site.stop(worker)
    assert len(slow.connections) == 1, "sent twice"

    admin = factories.Sysadmin()
    log = helpers.call_action(
        "webhook_delivery_list", context={"user": admin["name"]}, id=hook
    )
    assert len(log) == 1, log
    assert says_deadline(log[0]["error"]), log[0]
    assert log[0]["outcome"] == "retry scheduled"
    row = _delivery_row(hook)
    assert row.status == "pending"
    assert row.next_attempt_at > datetime.datetime.utcnow() + datetime.timedelta(
        seconds=200
    )

    # Nothing is due: a worker woken again sends nothing.
    wake_workers()
    site.work()
    assert len(slow.connections) == 1, "sent again before the retry was due"
    assert _delivery_row(hook).attempts == 1
