"""A real HTTP receiver on 127.0.0.1 for the tests (the ``receiver`` fixture).

It records every request (path, headers, body) and answers from a script of
responses (status, delay, headers), then with ``default_status``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
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
