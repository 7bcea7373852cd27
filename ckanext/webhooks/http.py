"""SSRF-safe HTTP for deliveries: every security rule about the network lives here.

A webhook sender is a proxy into the CKAN host's network, so before any
connection the host name is resolved, *every* address it resolves to is
checked, and the connection is made to the address that was checked (so DNS
rebinding between check and connect changes nothing). Redirects are never
followed, response bodies are read up to a cap, TLS is verified against the
host name. Connection pools are kept per (scheme, address, port, host name)
and shared by the delivery threads, so deliveries reuse keep-alive
connections.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.exceptions import (
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
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
DNS_CACHE_SECONDS = 30.0


class AddressRejected(ValueError):
    """The address may not be used as a webhook receiver; str() says why."""


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None if it is."""
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


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which receivers are allowed (see ckanext.webhooks.allow_private_addresses)."""

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_entries(cls, allow_private: bool, entries: Iterable[str]) -> Policy:
        return cls(allow_private, tuple(e.strip().lower() for e in entries if e))

    def _networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for entry in self.allowed_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        return networks

    def host_allowed(self, host: str) -> bool:
        return self.allow_private or host.lower() in self.allowed_hosts

    def ip_allowed(self, ip: IPAddress) -> bool:
        if self.allow_private:
            return True
        return any(ip in network for network in self._networks())


@dataclasses.dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    ip: str


@dataclasses.dataclass
class Outcome:
    status: int | None = None
    error: str | None = None
    latency_ms: int = 0
    body: bytes = b""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, or AddressRejected."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise AddressRejected(f"is not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise AddressRejected("must start with http:// or https://")
    if not parts.hostname:
        raise AddressRejected("has no host name")
    if parts.username is not None or parts.password is not None:
        raise AddressRejected("must not contain a user name or password")
    if any(c.isspace() for c in url):
        raise AddressRejected("must not contain spaces")
    port = port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname.lower(), port, path


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def check_url(
    url: str, policy: Policy, *, unresolvable_ok: bool = False
) -> Target | None:
    """Validate ``url`` and pick the address to connect to.

    Every address the host resolves to must be allowed. With
    ``unresolvable_ok`` (used when a webhook is created) a name that does not
    resolve yet is accepted and None returned; it is checked again when sent.
    """
    scheme, host, port, path = split_url(url)
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            addresses = resolve(host, port)
        except (socket.gaierror, UnicodeError, OSError):
            if unresolvable_ok:
                return None
            raise AddressRejected("host name does not resolve") from None
    if not addresses:
        raise AddressRejected("host name does not resolve")
    if not policy.host_allowed(host):
        for ip in addresses:
            problem = address_problem(ip)
            if problem and not policy.ip_allowed(ip):
                raise AddressRejected(
                    f"points to {problem}; receivers must be public "
                    "(see ckanext.webhooks.allowed_hosts)"
                )
    return Target(scheme, host, port, path, str(addresses[0]))


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
        return "connection broken"
    if isinstance(error, AddressRejected):
        return f"address rejected: {error}"
    return type(error).__name__


class Transport:
    """POSTs over pinned, pooled keep-alive connections; thread-safe."""

    def __init__(
        self,
        policy: Policy,
        timeout: float = 10.0,
        max_response_bytes: int = 1024,
        pool_size: int = 10,
    ):
        self.policy = policy
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.max_response_bytes = max_response_bytes
        self.pool_size = pool_size
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._checked: dict[str, tuple[float, Target]] = {}
        self._lock = threading.Lock()

    def _target(self, url: str) -> Target:
        """check_url, remembered for a few seconds: one lookup per host per burst."""
        now = time.monotonic()
        cached = self._checked.get(url)
        if cached and cached[0] > now:
            return cached[1]
        target = check_url(url, self.policy)
        assert target is not None
        self._checked[url] = (now + DNS_CACHE_SECONDS, target)
        return target

    def _pool(self, target: Target) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.ip, target.port, target.host)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                common = {
                    "host": target.ip,
                    "port": target.port,
                    "maxsize": self.pool_size,
                    "block": False,
                    "retries": False,
                    "timeout": self.timeout,
                }
                if target.scheme == "https":
                    pool = urllib3.HTTPSConnectionPool(
                        server_hostname=target.host,
                        assert_hostname=target.host,
                        cert_reqs="CERT_REQUIRED",
                        ca_certs=certifi.where(),
                        **common,
                    )
                else:
                    pool = urllib3.HTTPConnectionPool(**common)
                self._pools[key] = pool
            return pool

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome()
        try:
            target = self._target(url)
            default_port = 443 if target.scheme == "https" else 80
            host_header = target.host if ":" not in target.host else f"[{target.host}]"
            if target.port != default_port:
                host_header += f":{target.port}"
            response = self._pool(target).urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            try:
                outcome.status = response.status
                # Raw bytes: an unasked-for gzip body is never inflated.
                outcome.body = response.read(
                    self.max_response_bytes + 1, decode_content=False
                )
                if len(outcome.body) > self.max_response_bytes:
                    # Unread data left: do not put this connection back.
                    outcome.body = outcome.body[: self.max_response_bytes]
                    response.close()
                outcome.retry_after = _retry_after(response.headers.get("Retry-After"))
            finally:
                response.release_conn()
        except Exception as error:  # every failure is a recorded outcome
            outcome.error = _describe(error)
        outcome.latency_ms = int((time.perf_counter() - started) * 1000)
        return outcome

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
