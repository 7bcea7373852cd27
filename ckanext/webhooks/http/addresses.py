"""Which receivers may be sent to: URL rules, address classes, the policy.

A webhook sender is a proxy into the CKAN host's network, so before any
connection the host name is resolved and *every* address it resolves to is
checked; the sender then connects to the address that was checked (a
``Target``), so DNS rebinding between check and connect changes nothing.
Name lookups have a time limit: ``getaddrinfo`` cannot be interrupted, so it
runs in daemon threads, a bounded number of them, abandoned when time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = [
    "NOT_PUBLIC",
    "AddressRejected",
    "Lookups",
    "Policy",
    "Target",
    "address_problem",
    "check_url",
    "host_and_port",
    "judge",
    "literal_address",
    "receiver_host",
    "resolve",
    "split_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_BRACKETED = re.compile(r"\[([0-9a-f:.]+)\](?::(\d+))?")
_SPACE = re.compile(r"\s")
RESOLVE_SECONDS = 2.0  # a name lookup while validating a web request
MAX_PARALLEL_LOOKUPS = 16  # threads a hung resolver can hold at most
NOT_PUBLIC = "is not a public address"  # one message: no map of internal DNS


class AddressRejected(ValueError):
    """The address may not be used as a webhook receiver; str() says why."""


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
    if _SPACE.search(url):  # the same characters as str.isspace
        raise AddressRejected("must not contain spaces")
    if port == 0:
        raise AddressRejected("is not a valid URL (port 0)")
    try:
        host = _normal_host(parts.hostname)
    except ValueError:
        raise AddressRejected("has an invalid host name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme], path


def host_and_port(scheme: str, host: str, port: int) -> str:
    """``host[:port]`` with IPv6 in brackets and the scheme's default port left out."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"


def receiver_host(url: str) -> str:
    """``host[:port]``, one string however the URL spells it: what limits count.

    It is also the Host header sent.
    """
    return host_and_port(*split_url(url)[:3])


def literal_address(host: str) -> IPAddress | None:
    """The address a normalised host spells, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _lookup(host: str, port: int) -> list[IPAddress] | Exception:
    """Every address of ``host`` (first answer first), or the lookup's error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = (ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos)
        return list(dict.fromkeys(found))
    except Exception as error:
        return error


def _answer(result: list[IPAddress] | Exception) -> list[IPAddress]:
    if isinstance(result, Exception):
        raise result
    return result


_lookup_slots = threading.BoundedSemaphore(MAX_PARALLEL_LOOKUPS)


def resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address of ``host``, or TimeoutError after ``timeout`` seconds."""
    started, done = time.monotonic(), threading.Event()
    answer: list[list[IPAddress] | Exception] = []
    if not _lookup_slots.acquire(timeout=max(timeout, 0.0)):
        raise TimeoutError("name lookup timed out")

    def lookup() -> None:
        try:
            answer.append(_lookup(host, port))
        finally:
            _lookup_slots.release()
            done.set()

    threading.Thread(target=lookup, name="webhooks-dns", daemon=True).start()
    if not done.wait(max(0.0, timeout - (time.monotonic() - started))):
        raise TimeoutError("name lookup timed out")
    return _answer(answer[0])


class Lookups:
    """Name lookups for one event loop, in at most ``slots`` daemon threads.

    A lookup that its caller gave up on (cancelled at the deadline) keeps its
    thread and its slot until the resolver answers, so a hung resolver holds
    a bounded number of threads and later lookups wait for a slot instead.
    """

    def __init__(self, slots: int = MAX_PARALLEL_LOOKUPS) -> None:
        self._slots = asyncio.Semaphore(slots)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[IPAddress] | Exception] = loop.create_future()

        def deliver(result: list[IPAddress] | Exception) -> None:
            self._slots.release()
            if not answer.done():
                answer.set_result(result)

        def lookup() -> None:
            result = _lookup(host, port)
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(deliver, result)

        try:
            threading.Thread(target=lookup, name="webhooks-dns", daemon=True).start()
        except BaseException:
            self._slots.release()
            raise
        return _answer(await answer)


def judge(
    scheme: str,
    host: str,
    port: int,
    path: str,
    addresses: list[IPAddress],
    policy: Policy,
) -> Target:
    """The Target for ``addresses`` of the host, if every one of them may be used."""
    if not addresses:
        raise AddressRejected("host name does not resolve")
    exempt = any(address_problem(ip) for ip in addresses)
    if exempt and not policy.host_allowed(host, port):
        for ip in addresses:
            if address_problem(ip) and not policy.ip_allowed(ip, port):
                raise AddressRejected(NOT_PUBLIC)
    return Target(scheme, host, port, path, str(addresses[0]), exempt)


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
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = resolve(host, port, resolve_timeout)
        except (OSError, UnicodeError):  # TimeoutError is an OSError
            if unresolvable_ok:
                return None
            raise AddressRejected("host name does not resolve") from None
    return judge(scheme, host, port, path, addresses, policy)
