"""Misbehaving receivers on raw loopback sockets, for the limits of webhooks.http.

``recording.Receiver`` is a well-behaved HTTP server; these are not. Each accepted
connection is served in its own thread by a handler ``(server, conn, number)``;
handlers sleep with ``server.pause`` so that ``stop()`` ends them at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[["RawServer", socket.socket, int], None]
TRICKLE_SECONDS = 120  # how long a trickling receiver would take to finish


class RawServer:
    """Accepts connections on ``host`` and counts what the client does."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self.handler = handler
        self.connections = 0  # accepted
        self.requests = 0  # request heads read by read_request
        self.hung_up = 0  # connections the client closed while the server waited
        self.stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._cond = threading.Condition()

    def start(self) -> RawServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        with self._cond:
            for sock in self._sockets:
                sock.close()

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._cond:
                self.connections += 1
                self._sockets.append(conn)
                number = self.connections
                self._cond.notify_all()
            threading.Thread(
                target=self._serve, args=(conn, number), daemon=True
            ).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError):  # the client gave up: what these are for
            self.handler(self, conn, number)

    def count(self, what: str, by: int = 1) -> None:
        with self._cond:
            setattr(self, what, getattr(self, what) + by)
            self._cond.notify_all()

    def wait_until(
        self, test: Callable[[RawServer], bool], timeout: float = 10
    ) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: test(self), timeout)

    def pause(self, seconds: float) -> bool:
        """Sleep; False when the server is stopping and the handler should end."""
        return not self.stopped.wait(seconds)


def read_request(server: RawServer, conn: socket.socket) -> bool:
    """Read one request (head and Content-Length body); False on the client's EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            if not data:
                server.count("hung_up")
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    server.count("requests")
    return True


def answer(
    status: int = 200,
    headers: list[str] | None = None,
    body: bytes = b"ok",
    after: float = 0.0,
) -> Handler:
    """A keep-alive receiver that answers every request the same way, ``after``
    seconds."""
    lines = [f"HTTP/1.1 {status} Whatever", *(headers or [])]
    lines.append(f"Content-Length: {len(body)}")
    response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def handle(server: RawServer, conn: socket.socket, number: int) -> None:
        while read_request(server, conn):
            if after and not server.pause(after):
                return
            conn.sendall(response)

    return handle


def raw(response: bytes, then_close: bool = False) -> Handler:
    """Answers every request with ``response`` as it is (any framing, any
    number of heads); with ``then_close``, closes after the first answer."""

    def handle(server: RawServer, conn: socket.socket, number: int) -> None:
        while read_request(server, conn):
            conn.sendall(response)
            if then_close:
                conn.close()
                return

    return handle


def once_per_connection(response: bytes) -> Handler:
    """Answers the first request of a connection, then reads the next one and
    closes without a word: a keep-alive timeout that crossed a new request."""

    def handle(server: RawServer, conn: socket.socket, number: int) -> None:
        if read_request(server, conn):
            conn.sendall(response)
            if read_request(server, conn):
                conn.close()

    return handle


def speak_first(response: bytes) -> Handler:
    """Sends ``response`` as soon as the client connects, then waits."""

    def handle(server: RawServer, conn: socket.socket, number: int) -> None:
        conn.sendall(response)
        server.pause(TRICKLE_SECONDS)

    return handle


def hang_up(server: RawServer, conn: socket.socket, number: int) -> None:
    """Reads the request and closes without answering."""
    read_request(server, conn)
    conn.close()


def trickle_head(server: RawServer, conn: socket.socket, number: int) -> None:
    """Status line at once, then a header one byte a second."""
    read_request(server, conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(TRICKLE_SECONDS):
        if not server.pause(1):
            return
        conn.sendall(b"z")


def trickle_body(server: RawServer, conn: socket.socket, number: int) -> None:
    """A whole head at once, then the body one byte a second."""
    read_request(server, conn)
    conn.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Length: {TRICKLE_SECONDS}\r\n\r\n".encode()
    )
    for _ in range(TRICKLE_SECONDS):
        if not server.pause(1):
            return
        conn.sendall(b"z")


def silent(server: RawServer, conn: socket.socket, number: int) -> None:
    """Accepts and never says a word (not even a TLS handshake)."""
    server.pause(TRICKLE_SECONDS)


def first_then(first: Handler, then: Handler) -> Handler:
    """``first`` for the first connection, ``then`` for every later one."""

    def handle(server: RawServer, conn: socket.socket, number: int) -> None:
        (first if number == 1 else then)(server, conn, number)

    return handle
