"""SSRF-safe HTTP for deliveries: every security rule about the network lives here.

A webhook sender is a proxy into the CKAN host's network, so before any
connection the host name is resolved, *every* address it resolves to is
checked, and the connection is made to the address that was checked (so DNS
rebinding between check and connect changes nothing). Redirects are never
followed, response bodies are read up to a cap, TLS is verified against the
host name. At most ``max_pools`` connection pools, one per (scheme, address,
port, host name), are shared by the delivery threads for keep-alive reuse.

A receiver is anyone's server, so nothing it does may hold a sender for long:
``timeout`` is one deadline for the whole request (lookup, connect, TLS,
sending, response head and body), and the response head is capped. A
receiver reachable only because the policy exempts it (intranet, tests) never
has its answer recorded: else anyone could point a webhook at any internal
port and read its first bytes in the delivery log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import heapq
import http.client
import ipaddress
import itertools
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

__all__ = [
    "AddressRejected",
    "Outcome",
    "Policy",
    "Transport",
    "address_problem",
    "check_url",
    "receiver_host",
    "split_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
K = TypeVar("K")
V = TypeVar("V")

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_BRACKETED = re.compile(r"\[([0-9a-f:.]+)\](?::(\d+))?")
DNS_CACHE_SECONDS = 30.0
RESOLVE_SECONDS = 2.0  # a name lookup while validating a web request
MAX_PARALLEL_LOOKUPS = 16  # threads a hung resolver can hold at most
MAX_RESPONSE_HEADERS = 64  # header lines in one head (http.client stops at 99)
MAX_RESPONSE_HEADER_BYTES = 16 * 1024  # the whole head, status line included
NOT_PUBLIC = "is not a public address"  # one message: no map of internal DNS


class AddressRejected(ValueError):
    """The address may not be used as a webhook receiver; str() says why."""


class ResponseHeadersTooLarge(http.client.HTTPException):
    """The receiver sent more response head than this module reads."""


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None (for tests and logs)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            problem = address_problem(embedded)
            return f"{problem} (embedded in IPv6)" if problem else None
        if ip.teredo:
            return "a Teredo tunnel address"
        if ip.is_site_local:  # fec0::/10: deprecated, still routed inside some sites
            return "a site-local address"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives here)"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "carrier-grade NAT"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    for failed, reason in checks:
        if failed:
            return f"a {reason} address"
    return None


def _normal_host(host: str) -> str:
    """One spelling per host, so that limits per receiver cannot be dodged.

    IPv4 in any form ``inet_aton`` takes (``0x7f.1``, ``2130706433``) becomes
    a dotted quad, as resolvers read it that way too; names are IDNA-encoded.
    """
    if ":" in host:
        return str(ipaddress.IPv6Address(host))
    host = host.lower().removesuffix(".")
    with contextlib.suppress(OSError):
        return socket.inet_ntoa(socket.inet_aton(host))
    name = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError
    if not _HOST_NAME.fullmatch(name):
        raise ValueError("not a host name")
    return name


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("not a port")
    return int(text)


@dataclasses.dataclass(frozen=True)
class Allowance:
    """One ``allowed_hosts`` entry: a host name or a network, on one port or all."""

    name: str | None = None
    network: Network | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> Allowance:
        """``host``, ``1.2.3.4`` or ``[v6]``, each with an optional ``:port``; CIDR."""
        text = entry.strip().lower()
        try:
            if "/" in text:
                return cls(network=ipaddress.ip_network(text, strict=False))
            if bracketed := _BRACKETED.fullmatch(text):
                port = _port(bracketed[2]) if bracketed[2] else None
                address = ipaddress.IPv6Address(bracketed[1])
                return cls(network=ipaddress.ip_network(address), port=port)
            if text.count(":") > 1:
                return cls(network=ipaddress.ip_network(ipaddress.IPv6Address(text)))
            host, colon, port_text = text.partition(":")
            port, host = _port(port_text) if colon else None, _normal_host(host)
            try:
                return cls(network=ipaddress.ip_network(host), port=port)
            except ValueError:
                return cls(name=host, port=port)
        except ValueError as e:
            raise ValueError(
                f"allowed_hosts entry {entry!r} is malformed ({e})"
            ) from None

    def admits(self, port: int) -> bool:
        return self.port is None or self.port == port


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which non-public receivers are allowed, and on which ports."""

    allow_private: bool = False
    allowed: tuple[Allowance, ...] = ()

    @classmethod
    def from_entries(cls, allow_private: bool, entries: Iterable[str]) -> Policy:
        """Parse config entries; a malformed one is a loud ValueError naming it."""
        allowed = tuple(Allowance.parse(e) for e in entries if e.strip())
        return cls(allow_private, allowed)

    def host_allowed(self, host: str, port: int) -> bool:
        allowed = (a.name == host and a.admits(port) for a in self.allowed)
        return self.allow_private or any(allowed)

    def ip_allowed(self, ip: IPAddress, port: int) -> bool:
        networks = (a.network for a in self.allowed if a.admits(port))
        return self.allow_private or any(n and ip in n for n in networks)


@dataclasses.dataclass(frozen=True)
class Target:
    """A checked receiver; ``exempt``: reachable only by the policy's leave."""

    scheme: str
    host: str
    port: int
    path: str
    ip: str
    exempt: bool = False


@dataclasses.dataclass
class Outcome:
    """One attempt. A request past its deadline has no status, only the error."""

    status: int | None = None
    error: str | None = None
    latency_ms: int = 0
    body: bytes = b""
    retry_after: float | None = None
    body_withheld: bool = False  # an exempt receiver's answer is never kept

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, normalised host, port, path) of an http(s) URL, or AddressRejected."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise AddressRejected(f"is not a valid URL ({e})") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise AddressRejected("must start with http:// or https://")
    if not parts.hostname:
        raise AddressRejected("has no host name")
    if parts.username is not None or parts.password is not None:
        raise AddressRejected("must not contain a user name or password")
    if any(c.isspace() for c in url):
        raise AddressRejected("must not contain spaces")
    if port == 0:
        raise AddressRejected("is not a valid URL (port 0)")
    try:
        host = _normal_host(parts.hostname)
    except ValueError:
        raise AddressRejected("has an invalid host name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme], path


def _host_and_port(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"


def receiver_host(url: str) -> str:
    """``host[:port]``, one string however the URL spells it: what limits count.

    It is also the Host header sent.
    """
    return _host_and_port(*split_url(url)[:3])


_lookup_slots = threading.BoundedSemaphore(MAX_PARALLEL_LOOKUPS)


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address of ``host``, or TimeoutError after ``timeout`` seconds.

    getaddrinfo cannot be interrupted: it runs in a daemon thread, abandoned
    when time is up; the semaphore bounds how many a hung resolver can hold.
    """
    started, done = time.monotonic(), threading.Event()
    answer: list[Any] = []  # the lookup's result or its exception
    if not _lookup_slots.acquire(timeout=max(timeout, 0.0)):
        raise TimeoutError("name lookup timed out")

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as error:
            answer.append(error)
        finally:
            _lookup_slots.release()
            done.set()

    threading.Thread(target=lookup, name="webhooks-dns", daemon=True).start()
    if not done.wait(max(0.0, timeout - (time.monotonic() - started))):
        raise TimeoutError("name lookup timed out")
    if isinstance(answer[0], Exception):
        raise answer[0]
    found = (ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in answer[0])
    return list(dict.fromkeys(found))


def check_url(
    url: str,
    policy: Policy,
    *,
    unresolvable_ok: bool = False,
    resolve_timeout: float = RESOLVE_SECONDS,
) -> Target | None:
    """Validate ``url`` and pick the address to connect to.

    Every address the host resolves to must be public or allowed by the
    policy. With ``unresolvable_ok`` (used when a webhook is created) a name
    that does not resolve within ``resolve_timeout`` is accepted and None
    returned; it is checked again when sent.
    """
    scheme, host, port, path = split_url(url)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = resolve(host, port, resolve_timeout)
        except (OSError, UnicodeError):  # TimeoutError is an OSError
            if unresolvable_ok:
                return None
            raise AddressRejected("host name does not resolve") from None
    if not addresses:
        raise AddressRejected("host name does not resolve")
    exempt = any(address_problem(ip) for ip in addresses)
    if exempt and not policy.host_allowed(host, port):
        for ip in addresses:
            if address_problem(ip) and not policy.ip_allowed(ip, port):
                raise AddressRejected(NOT_PUBLIC)
    return Target(scheme, host, port, path, str(addresses[0]), exempt)


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


def _describe(error: Exception) -> str:
    """A short reason that names neither the address nor its query string."""
    if isinstance(error, NewConnectionError):  # a subclass of ConnectTimeoutError
        reason = str(error).rsplit("]", 1)[-1].strip() or "failed"
        return f"connection failed: {reason}"
    if isinstance(error, ConnectTimeoutError):
        return "connect timeout"
    if isinstance(error, ReadTimeoutError):
        return "read timeout"
    if isinstance(error, SSLError):
        return "TLS error"
    if isinstance(error, ProtocolError):
        too_large = any(isinstance(a, ResponseHeadersTooLarge) for a in error.args)
        return "response headers too large" if too_large else "connection broken"
    if isinstance(error, AddressRejected):
        return f"address rejected: {error}"
    return type(error).__name__


class _HeadBudget:
    """The response's file while http.client reads the head: enforces the caps.

    http.client's own limits (99 headers of 64 KiB each) are process-wide
    module globals, so this module applies its caps here instead.
    """

    def __init__(self, fp: Any):
        self._fp, self._lines, self._bytes = fp, 0, 0

    def readline(self, limit: int = -1) -> bytes:
        room = MAX_RESPONSE_HEADER_BYTES - self._bytes + 1
        line: bytes = self._fp.readline(room if limit < 0 else min(limit, room))
        self._lines += line not in (b"\r\n", b"\n", b"")  # the status line too
        self._bytes += len(line)
        if self._bytes > MAX_RESPONSE_HEADER_BYTES or (
            self._lines > MAX_RESPONSE_HEADERS + 1
        ):
            raise ResponseHeadersTooLarge("response headers too large")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class _CappedHeadResponse(http.client.HTTPResponse):
    def begin(self) -> None:
        raw = self.fp
        self.fp = _HeadBudget(raw)  # type: ignore[assignment]
        try:
            super().begin()
        finally:
            self.fp = raw


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv/send blocked on it


class _Watch:
    """One request's sockets, shut down together when its deadline passes.

    Each is held as a duplicated descriptor: valid while TLS wraps the
    socket, and never a number reused by an unrelated socket.
    """

    def __init__(self, lock: threading.Condition):
        self.fired = self.done = False
        self._lock = lock
        self._twins: dict[int, socket.socket] = {}

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.done and sock.fileno() not in self._twins:
                twin = socket.socket(fileno=os.dup(sock.fileno()))
                self._twins[sock.fileno()] = twin
                if self.fired:
                    _shut(twin)

    def expire(self) -> None:  # with the lock held
        self.fired = True
        for twin in self._twins.values():
            _shut(twin)

    def finish(self) -> bool:
        """Stop watching; True if the deadline had ended the request."""
        with self._lock:
            self.done = True
            for twin in self._twins.values():
                twin.close()
            return self.fired


class _Reaper:
    """One thread that ends requests at their deadline, whatever the peer does.

    Socket timeouts bound each read, not a request: a receiver sending a byte
    a second never trips them. The thread runs while deadlines are pending.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        with self._cond:
            watch = _Watch(self._cond)
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webhooks-deadline", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()
            return watch

    def _run(self) -> None:
        with self._cond:
            while self._heap:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    watch = heapq.heappop(self._heap)[2]
                    if not watch.done:
                        watch.expire()
                if self._heap:
                    self._cond.wait(self._heap[0][0] - now)
            self._thread = None


_current = threading.local()  # .watch: the _Watch of this thread's request


class _Connection(HTTPConnection):
    """urllib3's connection with its sockets watched and its response head capped."""

    response_class = _CappedHeadResponse

    def _watch(self, sock: socket.socket) -> None:
        if watch := getattr(_current, "watch", None):
            watch.add(sock)

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, used again
            self._watch(self.sock)
        super().request(*args, **kwargs)


class _TLSConnection(HTTPSConnection, _Connection):
    pass


def _new_pool(target: Target, size: int) -> urllib3.HTTPConnectionPool:
    common: dict[str, Any] = {"host": target.ip, "port": target.port}
    common.update(maxsize=size, block=False, retries=False)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **common,
        )
        pool.ConnectionCls = _TLSConnection
    else:
        pool = urllib3.HTTPConnectionPool(**common)
        pool.ConnectionCls = _Connection
    return pool


def _recall(cache: OrderedDict[K, V], key: K) -> V | None:
    if (value := cache.get(key)) is not None:
        cache.move_to_end(key)
    return value


def _remember(cache: OrderedDict[K, V], key: K, value: V, size: int) -> list[V]:
    """Store ``value`` as most recent; returns the least recent beyond ``size``."""
    cache[key] = value
    cache.move_to_end(key)
    return [cache.popitem(last=False)[1] for _ in range(len(cache) - max(1, size))]


class Transport:
    """POSTs over pinned, pooled keep-alive connections; thread-safe.

    ``timeout`` is the deadline of a whole request; ``pool_size`` connections
    are kept per receiver address, for at most ``max_pools`` receivers.
    """

    def __init__(
        self,
        policy: Policy,
        timeout: float = 10.0,
        max_response_bytes: int = 1024,
        pool_size: int = 10,
        max_pools: int = 100,
    ):
        self.policy = policy
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.pool_size = pool_size
        self.max_pools = max_pools
        self._pools: OrderedDict[tuple[str, str, int, str], Any] = OrderedDict()
        self._checked: OrderedDict[tuple[str, str, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._reaper = _Reaper()

    def _target(self, url: str, deadline: float) -> Target:
        """check_url, remembered for a few seconds: one lookup per host per burst."""
        scheme, host, port, path = split_url(url)
        now = time.monotonic()
        with self._lock:
            cached = _recall(self._checked, (scheme, host, port))
        if cached and cached[0] > now:
            return dataclasses.replace(cached[1], path=path)
        target = check_url(url, self.policy, resolve_timeout=deadline - now)
        assert target is not None
        with self._lock:
            entry = (now + DNS_CACHE_SECONDS, target)
            _remember(self._checked, (scheme, host, port), entry, self.max_pools)
        return target

    def _pool(self, target: Target) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.ip, target.port, target.host)
        with self._lock:
            pool, evicted = _recall(self._pools, key), []
            if pool is None:
                pool = _new_pool(target, self.pool_size)
                evicted = _remember(self._pools, key, pool, self.max_pools)
        for old in evicted:  # connections in use close when they are released
            old.close()
        return pool

    def _open(
        self, target: Target, body: bytes, headers: dict[str, str], deadline: float
    ) -> urllib3.BaseHTTPResponse:
        left = max(0.001, deadline - time.monotonic())
        host = _host_and_port(target.scheme, target.host, target.port)
        for attempt in (1, 2):
            try:
                return self._pool(target).urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers={**headers, "Host": host},
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=left, read=left),
                )
            except ClosedPoolError:  # evicted by another thread; nothing was sent
                if attempt == 2:
                    raise
        raise AssertionError("not reached")

    def _read(self, response: Any, target: Target, outcome: Outcome) -> None:
        outcome.status = response.status
        outcome.retry_after = _retry_after(response.headers.get("Retry-After"))
        # Raw bytes: an unasked-for gzip body is never inflated. An exempt
        # receiver's short answer is read only so that the connection is reused.
        data = response.read(self.max_response_bytes + 1, decode_content=False)
        if len(data) > self.max_response_bytes:
            response.close()  # unread data left: never back into the pool
        outcome.body_withheld = target.exempt
        outcome.body = b"" if target.exempt else data[: self.max_response_bytes]

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """One attempt, ended by the deadline if it is not over by then."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        outcome, response = Outcome(), None
        watch = _current.watch = self._reaper.watch(deadline)
        try:
            target = self._target(url, deadline)
            response = self._open(target, body, headers, deadline)
            self._read(response, target, outcome)
        except Exception as error:  # every failure is a recorded outcome
            outcome.error = _describe(error)
        finally:
            _current.watch = None
            late = watch.finish() or (
                outcome.error is not None and time.monotonic() >= deadline
            )
            if response is not None:
                if late or outcome.error:  # a broken connection is never reused
                    response.close()
                response.release_conn()
        if late:
            outcome = Outcome(
                error=f"timed out after {self.timeout:g} s "
                "(deadline for the whole request)"
            )
        outcome.latency_ms = int((time.perf_counter() - started) * 1000)
        return outcome

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self._checked.clear()
        for pool in pools:
            pool.close()
