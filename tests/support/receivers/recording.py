"""A real HTTP receiver on 127.0.0.1 for the tests (the ``receiver`` fixture).

It records every request (path, headers, body) and answers from a script of
responses (status, delay, headers), then with ``default_status``. ``OPTIONS``
requests (the consent handshake) are recorded in ``handshakes`` and answered
from ``options_script``, then with ``options_default``: 405 unless a test
sets it (``consent``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass
class Reply:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


class Receiver:
    def __init__(
        self, default_status: int = 200, record_bodies: bool = True, port: int = 0
    ):
        self.default = Reply(default_status)
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.options_default = Reply(405, body=b"")
        self.options_script: list[Reply] = []
        self.handshakes: list[Received] = []
        self.callback_headers: dict[str, str] | None = None  # None: no callback
        self.callbacks: list[int] = []  # statuses of the callbacks made
        self.record_bodies = record_bodies
        self.count = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                reply = receiver._next(self.path, dict(self.headers.items()), body)
                self._answer(reply)

            def do_OPTIONS(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                self._answer(receiver._next_options(self.path, dict(self.headers)))
                callback = self.headers.get("WebHook-Request-Callback")
                if callback and receiver.callback_headers is not None:
                    threading.Thread(
                        target=receiver._call_back, args=(callback,), daemon=True
                    ).start()

            def _answer(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self.server = _Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _next(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._cond:
            self.count += 1
            if self.record_bodies:
                self.received.append(Received(path, headers, body, time.time()))
            reply = self.script.pop(0) if self.script else self.default
            self._cond.notify_all()
            return reply

    def _next_options(self, path: str, headers: dict[str, str]) -> Reply:
        with self._cond:
            self.handshakes.append(Received(path, headers, b"", time.time()))
            reply = self.options_script.pop(0) if self.options_script else None
            self._cond.notify_all()
            return reply or self.options_default

    def _call_back(self, url: str) -> None:
        request = urllib.request.Request(url, headers=self.callback_headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as error:
            status = error.code
        with self._cond:
            self.callbacks.append(status)
            self._cond.notify_all()

    def consent_by_callback(self, rate: str | None = None) -> None:
        """Answer handshakes with 200 and no consent, then consent by calling
        the callback URL (GET), as the asynchronous form of the handshake."""
        self.options_default = Reply(200, body=b"")
        self.callback_headers = {} if rate is None else {"WebHook-Allowed-Rate": rate}

    def wait_for_handshakes(self, count: int, timeout: float = 10.0) -> bool:
        return self._wait_until(lambda: len(self.handshakes) >= count, timeout)

    def wait_for_callbacks(self, count: int, timeout: float = 10.0) -> bool:
        return self._wait_until(lambda: len(self.callbacks) >= count, timeout)

    def _wait_until(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def consent(self, origin: str = "*", rate: str | None = None) -> None:
        """Answer handshakes with consent (``WebHook-Allowed-Origin``)."""
        headers = {"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
        if rate is not None:
            headers["WebHook-Allowed-Rate"] = rate
        self.options_default = Reply(200, headers=headers, body=b"")

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.count < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def unique_messages(self) -> set[tuple[str, str]]:
        """(webhook-id, path) of every request: one per event and webhook."""
        with self._lock:
            return {(r.headers.get("webhook-id"), r.path) for r in self.received}

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json for r in self.received]

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
