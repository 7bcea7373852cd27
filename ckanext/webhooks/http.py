"""SSRF-safe HTTP for deliveries: every security rule about the network lives here.

A webhook sender is a proxy into the CKAN host's network, so before any
connection the host name is resolved, *every* address it resolves to is
checked, and the connection is made to the address that was checked (so DNS
rebinding between check and connect changes nothing). Redirects are never
followed, response bodies are read up to a cap, TLS is verified against the
host name. Connection pools are kept per (scheme, address, port, host name),
at most ``max_pools`` of them, and shared by the delivery threads, so
deliveries reuse keep-alive connections.

A receiver is anyone's server, so nothing it does may hold a sender for
long: ``timeout`` is one wall-clock deadline for the whole request (lookup,
connect, TLS, sending, response head and body), enforced by a reaper thread
that shuts down sockets past their deadline, and the response head is capped.
An address that is reachable only because the policy exempts it (intranet,
tests) never has its answer recorded: otherwise anyone could point a webhook
at any port of an internal host and read its first bytes in the delivery log.
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
from typing import Any, Generic, TypeVar
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
    """Why ``ip`` is not a public unicast address, or None if it is (for logs)."""
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
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        pass
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
        """``host``, ``1.2.3.4``, ``[v6]``, each with an optional ``:port``, or CIDR."""
        text = entry.strip().lower()
        try:
            if "/" in text:
                return cls(network=ipaddress.ip_network(text, strict=False))
            bracketed = _BRACKETED.fullmatch(text)
            if bracketed:
                port = _port(bracketed[2]) if bracketed[2] else None
                address = ipaddress.IPv6Address(bracketed[1])
                return cls(network=ipaddress.ip_network(address), port=port)
            if text.count(":") > 1:
                return cls(network=ipaddress.ip_network(ipaddress.IPv6Address(text)))
            host, colon, port_text = text.partition(":")
            port = _port(port_text) if colon else None
            host = _normal_host(host)
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
        """Parse config entries; a malformed one raises ValueError naming it."""
        return cls(
            allow_private, tuple(Allowance.parse(e) for e in entries if e.strip())
        )

    def host_allowed(self, host: str, port: int) -> bool:
        return self.allow_private or any(
            a.name == host and a.admits(port) for a in self.allowed
        )

    def ip_allowed(self, ip: IPAddress, port: int) -> bool:
        return self.allow_private or any(
            a.network is not None and ip in a.network and a.admits(port)
            for a in self.allowed
        )


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
    body_withheld: bool = False  # an exempt (non-public) receiver's answer

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
    """``host[:port]`` of ``url``, one string however the URL spells it.

    What per-receiver limits count; it is also the Host header sent.
    """
    scheme, host, port, _ = split_url(url)
    return _host_and_port(scheme, host, port)


_lookup_slots = threading.BoundedSemaphore(MAX_PARALLEL_LOOKUPS)


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address of ``host``, or TimeoutError after ``timeout`` seconds.

    getaddrinfo cannot be interrupted, so it runs in a daemon thread that is
    abandoned when time is up; the semaphore bounds how many a hung resolver
    can hold.
    """
    started = time.monotonic()
    if not _lookup_slots.acquire(timeout=max(timeout, 0.0)):
        raise TimeoutError("name lookup timed out")
    answer: list[Any] = []
    done = threading.Event()

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
    seen: list[IPAddress] = []
    for info in answer[0]:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


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
        too_large = [a for a in error.args if isinstance(a, ResponseHeadersTooLarge)]
        return "response headers too large" if too_large else "connection broken"
    if isinstance(error, AddressRejected):
        return f"address rejected: {error}"
    return type(error).__name__


class _HeadBudget:
    """The response's file while http.client reads the head: counts what it takes.

    http.client's own limits (100 headers of 64 KiB each) are module globals
    for the whole process, so this module applies its caps here instead.
    """

    def __init__(self, fp: Any):
        self._fp = fp
        self._lines = 0
        self._bytes = 0

    def readline(self, limit: int = -1) -> bytes:
        room = MAX_RESPONSE_HEADER_BYTES - self._bytes + 1
        line: bytes = self._fp.readline(room if limit < 0 else min(limit, room))
        self._lines += 1
        self._bytes += len(line)
        header = line not in (b"\r\n", b"\n", b"")
        # + 1: the status line
        if self._bytes > MAX_RESPONSE_HEADER_BYTES or (
            header and self._lines > MAX_RESPONSE_HEADERS + 1
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


class _Watch:
    """The sockets of one request, shut down together when its deadline passes.

    Each socket is watched through a duplicate of its descriptor: it stays
    valid while TLS wraps the socket, and its number cannot be reused by an
    unrelated socket before the watch ends.
    """

    def __init__(self, deadline: float, lock: threading.Condition):
        self.deadline = deadline
        self.fired = False
        self.done = False
        self._lock = lock
        self._twins: dict[int, socket.socket] = {}

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.done or sock.fileno() in self._twins:
                return
            twin = socket.socket(fileno=os.dup(sock.fileno()))
            self._twins[sock.fileno()] = twin
            if self.fired:
                self._shut(twin)

    def expire(self) -> None:  # with the lock held
        self.fired = True
        for twin in self._twins.values():
            self._shut(twin)

    def finish(self) -> bool:
        """Stop watching; True if the deadline had already ended the request."""
        with self._lock:
            self.done = True
            for twin in self._twins.values():
                twin.close()
            self._twins.clear()
            return self.fired

    @staticmethod
    def _shut(twin: socket.socket) -> None:
        with contextlib.suppress(OSError):
            twin.shutdown(socket.SHUT_RDWR)  # wakes a recv/send blocked on it


class _Reaper:
    """One thread that ends requests at their deadline, whatever the peer does.

    Socket timeouts bound each read, not a request: a receiver that sends a
    byte a second never trips them. The thread runs while watches are due.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        with self._cond:
            watch = _Watch(deadline, self._cond)
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


_current = threading.local()  # the _Watch of the request this thread is making


def _watch_socket(sock: socket.socket) -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)


class _Connection(HTTPConnection):
    """urllib3's connection, its sockets watched and its response head capped."""

    response_class = _CappedHeadResponse

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_socket(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, used again
            _watch_socket(self.sock)
        super().request(*args, **kwargs)


class _TLSConnection(HTTPSConnection, _Connection):
    pass


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


def _new_pool(target: Target, size: int) -> urllib3.HTTPConnectionPool:
    common: dict[str, Any] = {
        "host": target.ip,
        "port": target.port,
        "maxsize": size,
        "block": False,
        "retries": False,
    }
    if target.scheme == "https":
        return _TLSPool(
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **common,
        )
    return _Pool(**common)


class _Lru(Generic[K, V]):
    """A mapping that forgets its least recently used entries beyond ``size``."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> list[V]:
        """Store ``value``; returns what was evicted, for the caller to close."""
        self._items[key] = value
        self._items.move_to_end(key)
        evicted = []
        while len(self._items) > self.size:
            evicted.append(self._items.popitem(last=False)[1])
        return evicted

    def clear(self) -> list[V]:
        values = list(self._items.values())
        self._items.clear()
        return values

    def __len__(self) -> int:
        return len(self._items)


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
        self._pools: _Lru[tuple[str, str, int, str], urllib3.HTTPConnectionPool]
        self._pools = _Lru(max_pools)
        self._checked: _Lru[tuple[str, str, int], tuple[float, Target]]
        self._checked = _Lru(max_pools)
        self._lock = threading.Lock()
        self._reaper = _Reaper()

    def _target(self, url: str, deadline: float) -> Target:
        """check_url, remembered for a few seconds: one lookup per host per burst."""
        scheme, host, port, path = split_url(url)
        now = time.monotonic()
        with self._lock:
            cached = self._checked.get((scheme, host, port))
        if cached and cached[0] > now:
            return dataclasses.replace(cached[1], path=path)
        target = check_url(url, self.policy, resolve_timeout=deadline - now)
        assert target is not None
        with self._lock:
            self._checked.put((scheme, host, port), (now + DNS_CACHE_SECONDS, target))
        return target

    def _pool(self, target: Target) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.ip, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            evicted = []
            if pool is None:
                pool = _new_pool(target, self.pool_size)
                evicted = self._pools.put(key, pool)
        for old in evicted:  # connections in use close when they are released
            old.close()
        return pool

    def _open(
        self, target: Target, body: bytes, headers: dict[str, str], deadline: float
    ) -> Any:
        left = max(0.001, deadline - time.monotonic())
        for attempt in range(2):
            try:
                return self._pool(target).urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers={
                        **headers,
                        "Host": _host_and_port(target.scheme, target.host, target.port),
                    },
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=left, read=left),
                )
            except ClosedPoolError:  # evicted by another thread; nothing was sent
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read(self, response: Any, target: Target, outcome: Outcome) -> None:
        outcome.status = response.status
        outcome.retry_after = _retry_after(response.headers.get("Retry-After"))
        # Raw bytes: an unasked-for gzip body is never inflated.
        data = response.read(self.max_response_bytes + 1, decode_content=False)
        if len(data) > self.max_response_bytes:
            response.close()  # unread data left: never back into the pool
        if target.exempt:
            outcome.body_withheld = True  # read only so the connection is reused
        else:
            outcome.body = data[: self.max_response_bytes]

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """One attempt, ended by the deadline if it is not over by then."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        outcome, response = Outcome(), None
        watch = self._reaper.watch(deadline)
        _current.watch = watch
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
                if late or outcome.error:
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
            pools = self._pools.clear()
            self._checked.clear()
        for pool in pools:
            pool.close()
