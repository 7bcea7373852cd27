"""The sender: POSTs on asyncio streams, pinned, pooled, within one deadline.

A receiver is anyone's server, so nothing it does may hold a sender for long:
``timeout`` is one wall-clock deadline for the whole request (lookup,
connect, TLS, sending, response head and body), the response head is capped
and at most ``max_response_bytes`` of the body are read. The connection goes
to the address that was checked (``addresses.judge``); TLS is verified
against the host name. No redirect is followed.

One event loop, on a thread of its own, carries every request of a
``Transport``: thousands of slow receivers cost a socket each, not a thread.
A receiver reachable only because the policy exempts it (intranet, tests)
never has its answer kept: else anyone could point a webhook at any internal
port and read its first bytes in the delivery log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import email.utils
import functools
import os
import ssl
import time
from collections import OrderedDict

import certifi

from ckanext.webhooks.http.addresses import (
    AddressRejected,
    Lookups,
    Policy,
    Target,
    host_and_port,
    judge,
    literal_address,
    split_url,
)
from ckanext.webhooks.http.loop_thread import LoopThread
from ckanext.webhooks.http.pools import Connection, Pools, recall, remember
from ckanext.webhooks.http.wire import (
    STREAM_LIMIT,
    BadResponse,
    NoAnswer,
    ResponseHeadersTooLarge,
    read_body,
    request_bytes,
    request_start,
)

__all__ = ["Outcome", "Transport"]

DNS_CACHE_SECONDS = 30.0
HostKey = tuple[str, str, int]  # scheme, host, port


@dataclasses.dataclass
class Outcome:
    """One attempt. A request past its deadline has no status, only the error."""

    status: int | None = None
    error: str | None = None
    latency_ms: int = 0
    body: bytes = b""
    retry_after: float | None = None
    body_withheld: bool = False  # an exempt receiver's answer is never kept
    fields: dict[bytes, bytes] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """A header of the answer (the last one, if repeated), or None."""
        value = self.fields.get(name.lower().encode("latin-1"))
        return None if value is None else value.decode("latin-1")


class ConnectFailed(Exception):
    """No connection to the receiver; str() is the system's reason."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(error: BaseException) -> str:
    """A short reason that names neither the address nor its query string."""
    if isinstance(error, ConnectFailed):
        return f"connection failed: {error}"
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return "TLS error"
    if isinstance(error, ResponseHeadersTooLarge):
        return "response headers too large"
    if isinstance(error, AddressRejected):
        return f"address rejected: {error}"
    if isinstance(error, BadResponse | EOFError | OSError):
        return "connection broken"  # EOFError: asyncio.IncompleteReadError
    return type(error).__name__


@functools.lru_cache(maxsize=1024)  # about 0.6 MB at most
def _route(url: str, method: str = "POST") -> tuple[tuple[str, str, int], str, bytes]:
    """((scheme, host, port), path, request start) of ``url``, parsed once."""
    scheme, host, port, path = split_url(url)
    start = request_start(path, host_and_port(scheme, host, port), method)
    return (scheme, host, port), path, start


class _Checks:
    """Each host's checked Target (or why it was refused), remembered for
    ``DNS_CACHE_SECONDS``: one lookup per host per burst. A lookup under way
    is shared by the requests that wait for it, and one request's deadline
    does not cancel it."""

    def __init__(self, policy: Policy, size: int) -> None:
        self.policy, self.size = policy, size
        self.lookups = Lookups()
        self._found: OrderedDict[HostKey, tuple[float, Target | asyncio.Future[Target]]]
        self._found = OrderedDict()

    def __len__(self) -> int:
        return len(self._found)

    def clear(self) -> None:
        self._found.clear()

    async def target(self, key: HostKey) -> Target:
        """The checked Target of (scheme, host, port), with an empty path."""
        cached = recall(self._found, key)
        if cached is None or cached[0] <= time.monotonic():
            cached = (time.monotonic() + DNS_CACHE_SECONDS, self._check(*key))
            remember(self._found, key, cached, self.size)
        found = cached[1]
        return found if isinstance(found, Target) else await asyncio.shield(found)

    def _check(
        self, scheme: str, host: str, port: int
    ) -> Target | asyncio.Future[Target]:
        literal = literal_address(host)
        if literal is not None:
            return judge(scheme, host, port, "", [literal], self.policy)
        return asyncio.ensure_future(self._resolve(scheme, host, port))

    async def _resolve(self, scheme: str, host: str, port: int) -> Target:
        try:
            addresses = await self.lookups.resolve(host, port)
        except (OSError, UnicodeError):
            raise AddressRejected("host name does not resolve") from None
        return judge(scheme, host, port, "", addresses, self.policy)


class _Deadline:
    """Cancels the current task after ``seconds``, as ``asyncio.timeout`` does
    (Python 3.11+): a timer, not a second task awaited with ``asyncio.wait``,
    which cost a fifth of the event loop's time per request."""

    def __init__(self, seconds: float) -> None:
        self._task = asyncio.current_task()
        self._expired = False
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    def reached(self) -> bool:
        """Whether the CancelledError being handled is the deadline's own
        (and not also someone else's cancellation, where that can be told)."""
        if not self._expired:
            return False
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        return uncancel is None or uncancel() == 0

    def cancel(self) -> None:
        self._timer.cancel()


class Transport:
    """POSTs over pinned, pooled keep-alive connections, from any thread.

    ``timeout`` is the deadline of a whole request; at most ``concurrency``
    requests are in flight, and ``pool_size`` idle connections are kept per
    receiver address, for at most ``max_pools`` receivers. Connections in use
    and idle together never number more than ``concurrency``: a file
    descriptor each.
    """

    def __init__(
        self,
        policy: Policy,
        timeout: float = 10.0,
        max_response_bytes: int = 1024,
        pool_size: int = 10,
        max_pools: int = 100,
        concurrency: int = 100,
    ):
        self.policy = policy
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.pool_size = pool_size
        self.max_pools = max_pools
        self.concurrency = concurrency
        self._pools = Pools(pool_size, max_pools)
        self._checked = _Checks(policy, max_pools)
        self._tls: ssl.SSLContext | None = None
        self._sending = 0  # requests holding a slot
        self._slots = asyncio.Semaphore(concurrency)
        self._loop = LoopThread("webhooks-send", on_start=self._fresh_loop_state)

    def submit(
        self, url: str, body: bytes, headers: dict[str, str], method: str = "POST"
    ) -> concurrent.futures.Future[Outcome]:
        """Send on the transport's own event loop; the future's result is the
        Outcome. Safe to call from any thread."""
        return self._loop.submit(self._send_in_turn, url, body, headers, method)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """One attempt, ended by the deadline if it is not over by then."""
        return self.submit(url, body, headers).result()

    def close(self) -> None:
        """Stop the loop thread: every request is ended, every connection closed."""
        self._loop.close(self._close_connections)

    def _fresh_loop_state(self) -> None:
        """What belongs to one event loop is made anew for each."""
        self._slots = asyncio.Semaphore(self.concurrency)
        self._checked = _Checks(self.policy, self.max_pools)

    async def _close_connections(self) -> None:
        self._pools.abort_all()
        self._checked.clear()
        await asyncio.sleep(0)  # the aborted sockets close on this turn

    async def _send_in_turn(
        self, url: str, body: bytes, headers: dict[str, str], method: str
    ) -> Outcome:
        """``send`` once a slot is free (at most ``concurrency`` at a time)."""
        async with self._slots:
            self._sending += 1
            try:
                return await self.send(url, body, headers, method)
            finally:
                self._sending -= 1

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], method: str = "POST"
    ) -> Outcome:
        """One attempt; every failure is an Outcome, never an exception."""
        started = time.perf_counter()
        outcome = Outcome()
        deadline = _Deadline(self.timeout)
        try:
            await self._exchange(url, body, headers, method, outcome)
        except asyncio.CancelledError:
            if not deadline.reached():
                raise
            # The exchange's clean-up aborted the connection.
            outcome = Outcome(
                error=f"timed out after {self.timeout:g} s "
                "(deadline for the whole request)"
            )
        except Exception as error:
            outcome.error = _describe(error)
        finally:
            deadline.cancel()
        outcome.latency_ms = int((time.perf_counter() - started) * 1000)
        return outcome

    async def _exchange(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        method: str,
        outcome: Outcome,
    ) -> None:
        target = await self._target(url)
        request = request_bytes(_route(url, method)[2], headers, body)
        key = (target.scheme, target.ip, target.port, target.host)
        connection = self._pools.take(key)
        if connection is not None:
            try:  # kept alive: the receiver may have closed it as it was reused
                head = await connection.ask(request)
            except (NoAnswer, ConnectionResetError, BrokenPipeError):
                connection = None
        if connection is None:
            connection = await self._connect(target)
            head = await connection.ask(request)
        outcome.status = head.status
        outcome.fields = head.fields
        outcome.retry_after = _retry_after(head.text(b"retry-after"))
        try:
            answer = await read_body(connection.reader, head, self.max_response_bytes)
        except BaseException:
            connection.abort()
            raise
        # An exempt receiver's short answer is read only to reuse the connection.
        outcome.body_withheld = target.exempt
        outcome.body = b"" if target.exempt else answer.data
        if answer.reusable:
            self._pools.give_back(key, connection)
        else:
            connection.close()

    async def _connect(self, target: Target) -> Connection:
        """A new connection to the checked address (TLS checks the host name)."""
        self._pools.shrink_to(self.concurrency - max(1, self._sending))
        tls = self._tls_context() if target.scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(
                target.ip,
                target.port,
                ssl=tls,
                server_hostname=target.host if tls else None,
                limit=STREAM_LIMIT,
            )
        except ssl.SSLError:
            raise
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else "failed"
            raise ConnectFailed(reason) from None
        return Connection(reader, writer)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=certifi.where())
        return self._tls

    async def _target(self, url: str) -> Target:
        """The checked Target of ``url`` (its host's check, remembered)."""
        key, path, _ = _route(url)
        found = await self._checked.target(key)
        return Target(*key, path, found.ip, found.exempt)
