"""A fast keep-alive HTTP/1.1 receiver for the benchmarks, in its own process.

One asyncio loop answers every connection, so a receiver never runs out of
threads and costs the sender little. It counts each POST by
(``webhook-id`` header, path): a webhook's path is unique in the benchmarks,
so a repeated key is a duplicate delivery. Query parameters shape the answer:
``?delay=0.2`` answers after 200 ms, ``?hang=1`` never answers (the sender's
timeout ends it).

Control requests (GET): ``/_stats`` returns the counts, ``/_arrivals`` the
first arrival time of each ``webhook-id``, ``/_reset`` forgets everything.

Run ``python -m tests.support.receivers.counting`` from the checkout: it
prints its port, then serves until killed. ``ReceiverProcess`` does that for
the benchmark scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

from tests.support.processes import ROOT, stop_process

HANG_SECONDS = 120.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.keys: set[tuple[bytes, str]] = set()
        self.arrivals: dict[str, float] = {}
        self.first: float | None = None
        self.last: float | None = None

    def add(self, webhook_id: bytes, path: str) -> None:
        now = time.time()
        self.count += 1
        self.keys.add((webhook_id, path))
        self.arrivals.setdefault(webhook_id.decode(), now)
        if self.first is None:
            self.first = now
        self.last = now

    def stats(self) -> dict:
        return {
            "count": self.count,
            "unique": len(self.keys),
            "duplicates": self.count - len(self.keys),
            "first": self.first,
            "last": self.last,
        }


def _json_reply(data: object) -> bytes:
    body = json.dumps(data).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n\r\n"
    )
    return head.encode() + body


async def _answer(counts: Counts, head: bytes, body: bytes) -> bytes | None:
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ", 2)
    parts = urlsplit(target.decode())
    if method == b"GET":
        if parts.path == "/_stats":
            return _json_reply(counts.stats())
        if parts.path == "/_arrivals":
            return _json_reply(counts.arrivals)
        if parts.path == "/_reset":
            counts.reset()
            return _json_reply({"reset": True})
        return _json_reply({})
    options = parse_qs(parts.query)
    if "hang" in options:
        await asyncio.sleep(HANG_SECONDS)
        return None
    delay = float(options.get("delay", ["0"])[0])
    if delay:
        await asyncio.sleep(delay)
    webhook_id = b""
    for line in lines[1:]:
        if line[:11].lower() == b"webhook-id:":
            webhook_id = line[11:].strip()
            break
    counts.add(webhook_id, parts.path)
    return OK


async def _connection(
    counts: Counts, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            reply = await _answer(counts, head, body)
            if reply is None:
                break
            writer.write(reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int = 0) -> None:
    counts = Counts()
    server = await asyncio.start_server(
        lambda r, w: _connection(counts, r, w), "127.0.0.1", port, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class ReceiverProcess:
    """Starts this module as a child process and reads its counts."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.load(response)

    def stats(self) -> dict:
        return self._get("/_stats")

    def arrivals(self) -> dict[str, float]:
        return self._get("/_arrivals")

    def reset(self) -> None:
        self._get("/_reset")

    def wait_for(self, count: int, timeout: float, poll: float = 0.02) -> dict:
        """Poll until ``count`` requests arrived or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["count"] >= count or time.monotonic() > deadline:
                return stats
            time.sleep(poll)

    def stop(self) -> None:
        stop_process(self.process, grace=10, group=False)

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
