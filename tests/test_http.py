"""SSRF rules of ckanext.webhooks.http, checked on real addresses and sockets.

Only the resolver is replaced (``socket.getaddrinfo``) where a test needs a
host name to resolve to a given address; every connection is real.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import email.utils
import gzip
import ipaddress
import socket
import threading
import time

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks.http import (
    NOT_PUBLIC,
    AddressRejected,
    Policy,
    Transport,
    address_problem,
    check_url,
    receiver_host,
)
from tests.support.processes import free_port
from tests.support.receivers.misbehaving import (
    RawServer,
    answer,
    first_then,
    hang_up,
    once_per_connection,
    raw,
    silent,
    speak_first,
    trickle_body,
    trickle_head,
)
from tests.support.receivers.recording import Receiver, Reply

STRICT = Policy()

FORBIDDEN = {
    "loopback": ["127.0.0.1", "127.255.255.254"],
    "rfc1918": ["10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.1"],
    "rfc1918 192.168": ["192.168.0.1", "192.168.255.254"],
    "cloud metadata": ["169.254.169.254", "169.254.0.1"],
    "cgnat": ["100.64.0.1", "100.127.255.254"],
    "multicast": ["224.0.0.1", "239.255.255.250"],
    "reserved": ["240.0.0.1", "255.255.255.255"],
    "this network": ["0.0.0.0", "0.1.2.3"],
    "ipv6 loopback": ["::1"],
    "ipv6 unspecified": ["::"],
    "ipv6 unique-local": ["fc00::1", "fd12:3456::1"],
    "ipv6 link-local": ["fe80::1", "febf::1"],
    "ipv6 site-local": ["fec0::1"],
    "ipv6 multicast": ["ff02::1"],
    "ipv4-mapped": ["::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254"],
    "ipv4-compatible": ["::127.0.0.1"],
    "nat64": ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe"],
    "6to4": ["2002:7f00:1::", "2002:a00:1::1"],
    "teredo": ["2001:0:4136:e378:8000:63bf:3fff:fdd2"],
    "documentation": ["192.0.2.1", "2001:db8::1"],
}

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
    "2002:5db8:d822::1",
]


def _all_forbidden():
    for kind, addresses in FORBIDDEN.items():
        for address in addresses:
            yield pytest.param(address, id=f"{kind}:{address}")


@pytest.mark.parametrize("address", _all_forbidden())
def test_address_problem_rejects_non_public(address):
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_address_problem_accepts_public(address):
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "word"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "embedded in IPv6"),
        ("fec0::1", "site-local"),
    ],
)
def test_address_problem_says_why(address, word):
    assert word in address_problem(ipaddress.ip_address(address))


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", _all_forbidden())
def test_check_url_rejects_literal_non_public_hosts_with_one_message(address):
    """The same words for every kind: a caller learns nothing of internal DNS."""
    with pytest.raises(AddressRejected) as error:
        check_url(f"http://{_literal(address)}:8080/hook", STRICT)
    assert str(error.value) == NOT_PUBLIC == "is not a public address"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://LOCALHOST:6379/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://[::ffff:7f00:1]/",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_check_url_rejects_other_spellings_of_local_hosts(url):
    """Names and odd numeric forms are resolved before they are judged."""
    with pytest.raises(AddressRejected):
        check_url(url, STRICT)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://example.com:6379/_FLUSHALL", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("//example.com/hook", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("https://:pw@example.com/", "user name or password"),
        ("http://", "no host name"),
        ("http:///path", "no host name"),
        ("https://example.com:99999/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com/a\nb", "spaces"),
    ],
)
def test_check_url_rejects_malformed_addresses(url, reason):
    with pytest.raises(AddressRejected, match=reason):
        check_url(url, STRICT)


def test_check_url_accepts_public_literal_and_keeps_path_and_query():
    target = check_url("https://93.184.216.34:8443/in/?token=abc", STRICT)
    assert (target.scheme, target.host, target.port) == ("https", "93.184.216.34", 8443)
    assert target.path == "/in/?token=abc"
    assert target.ip == "93.184.216.34"


def test_check_url_default_ports():
    assert check_url("http://93.184.216.34", STRICT).port == 80
    assert check_url("https://93.184.216.34", STRICT).port == 443


class FakeDNS:
    """Answers chosen names with chosen addresses; other names resolve normally.

    ``later[name]``, when set, is the answer to every lookup after the first.
    """

    def __init__(self, monkeypatch):
        self.answers: dict[str, list[str]] = {}
        self.later: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self._real(host, port, family, type, proto, flags)
        addresses = self.answers[name]
        if name in self.later and name in self.lookups:
            addresses = self.later[name]
        self.lookups.append(name)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        port = int(port or 0)
        infos = []
        for address in addresses:
            if ":" in address:
                sockaddr = (address, port, 0, 0)
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", sockaddr))
            else:
                infos.append(
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                )
        return infos


@pytest.fixture
def dns(monkeypatch):
    return FakeDNS(monkeypatch)


def test_every_resolved_address_is_checked(dns):
    dns.answers["mixed.example"] = ["93.184.216.34", "10.0.0.7"]
    with pytest.raises(AddressRejected, match=NOT_PUBLIC):
        check_url("https://mixed.example/hook", STRICT)


def test_ipv6_answers_are_checked_too(dns):
    dns.answers["v6.example"] = ["2606:4700:4700::1111", "::ffff:127.0.0.1"]
    with pytest.raises(AddressRejected, match=NOT_PUBLIC):
        check_url("https://v6.example/hook", STRICT)


def test_public_name_is_accepted_and_pinned_to_the_checked_address(dns):
    dns.answers["public.example"] = ["93.184.216.34"]
    target = check_url("https://Public.Example/hook", STRICT)
    assert target.host == "public.example"
    assert target.ip == "93.184.216.34"


def test_unresolvable_name_is_rejected_at_send_time_only(dns):
    dns.answers["nowhere.example"] = []
    with pytest.raises(AddressRejected, match="does not resolve"):
        check_url("https://nowhere.example/", STRICT)
    assert check_url("https://nowhere.example/", STRICT, unresolvable_ok=True) is None


def test_unresolvable_name_is_still_judged_on_its_syntax():
    with pytest.raises(AddressRejected, match="user name or password"):
        check_url("http://a:b@nowhere.invalid/", STRICT, unresolvable_ok=True)


def test_allowed_hosts_by_name(dns):
    dns.answers["intranet.example"] = ["10.20.1.2"]
    policy = Policy.from_entries(False, ["Intranet.Example"])
    assert check_url("http://intranet.example/in", policy).ip == "10.20.1.2"
    dns.answers["other.example"] = ["10.20.1.3"]
    with pytest.raises(AddressRejected):
        check_url("http://other.example/in", policy)


def test_allowed_hosts_by_network(dns):
    policy = Policy.from_entries(False, ["10.20.0.0/16", "fd00:1::/32"])
    dns.answers["inside.example"] = ["10.20.9.9"]
    dns.answers["outside.example"] = ["10.21.0.1"]
    dns.answers["both.example"] = ["10.20.9.9", "192.168.1.1"]
    assert check_url("http://inside.example/", policy).ip == "10.20.9.9"
    assert check_url("http://[fd00:1::5]/", policy).ip == "fd00:1::5"
    for url in (
        "http://outside.example/",
        "http://both.example/",
        "http://[fd00:2::5]/",
    ):
        with pytest.raises(AddressRejected):
            check_url(url, policy)


def test_allowed_network_does_not_open_the_other_address_family():
    policy = Policy.from_entries(False, ["127.0.0.1"])
    assert check_url("http://127.0.0.1:9/", policy).ip == "127.0.0.1"
    with pytest.raises(AddressRejected):
        check_url("http://[::1]:9/", policy)


def test_allowed_hosts_blank_entries_are_ignored():
    policy = Policy.from_entries(False, ["", "  "])
    assert policy.allowed == ()
    with pytest.raises(AddressRejected):
        check_url("http://10.0.0.1/", policy)


def test_allow_private_addresses_opens_every_address_but_not_bad_urls(dns):
    policy = Policy.from_entries(True, [])
    dns.answers["metadata.example"] = ["169.254.169.254"]
    assert check_url("http://metadata.example/", policy).ip == "169.254.169.254"
    assert check_url("http://[::1]:8080/", policy).ip == "::1"
    with pytest.raises(AddressRejected, match="user name or password"):
        check_url("http://u:p@10.0.0.1/", policy)
    with pytest.raises(AddressRejected, match="http:// or https://"):
        check_url("ftp://10.0.0.1/", policy)


# -- allowed_hosts entries ---------------------------------------------------


def test_allowed_hosts_entry_with_a_port_allows_only_that_port(dns):
    dns.answers["intranet.example"] = ["10.20.1.2"]
    policy = Policy.from_entries(
        False, ["Intranet.Example.:8080", "10.9.0.1:9000", "[fd00::7]:443"]
    )
    assert check_url("http://intranet.example:8080/in", policy).ip == "10.20.1.2"
    assert check_url("http://10.9.0.1:9000/", policy).ip == "10.9.0.1"
    assert check_url("https://[fd00::7]/", policy).ip == "fd00::7"
    for url in (
        "http://intranet.example/in",
        "http://intranet.example:8081/in",
        "http://10.9.0.1/",
        "http://10.9.0.1:9001/",
        "http://[fd00::7]/",
    ):
        with pytest.raises(AddressRejected, match=NOT_PUBLIC):
            check_url(url, policy)


def test_allowed_hosts_entries_are_normalised_like_urls(dns):
    dns.answers["xn--bcher-kva.example"] = ["10.20.1.2"]
    policy = Policy.from_entries(False, ["bücher.example", "0x7f.1:8000", "[::1]"])
    assert check_url("http://BÜCHER.example./", policy).ip == "10.20.1.2"
    assert check_url("http://127.0.0.1:8000/", policy).ip == "127.0.0.1"
    assert check_url("http://[0:0::1]:5/", policy).ip == "::1"


@pytest.mark.parametrize(
    "entry",
    [
        "not a network/99",
        "10.0.0.0/8:80",
        "10.0.0.0/33",
        "host:99999",
        "host:0",
        "host:",
        "1.2.3.4:http",
        "[::1",
        "[::1]:",
        "[not-v6]",
        "exa mple.example",
        "under$core.example",
        "a..b",
        ":8080",
    ],
)
def test_malformed_allowed_hosts_entry_is_a_loud_config_error(entry):
    with pytest.raises(ValueError, match="allowed_hosts entry") as error:
        Policy.from_entries(False, ["127.0.0.1", entry])
    assert repr(entry.strip().lower()) in str(error.value).lower()


def test_rejections_do_not_name_internal_kinds_or_config_options(dns):
    dns.answers["internal.example"] = ["169.254.169.254"]
    for url in ("http://internal.example/", "http://10.1.2.3/", "http://[::1]/"):
        with pytest.raises(AddressRejected) as error:
            check_url(url, STRICT)
        assert str(error.value) == NOT_PUBLIC
        assert "ckanext" not in str(error.value)


# -- receiver_host -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("HTTP://Example.COM.:80/a?b", "example.com"),
        ("http://example.com/other", "example.com"),
        ("https://example.com:443/#frag", "example.com"),
        ("https://example.com:80/", "example.com:80"),
        ("http://example.com:443/", "example.com:443"),
        ("http://example.com:8080/x;y?z", "example.com:8080"),
        ("http://bücher.example/", "xn--bcher-kva.example"),
        ("http://BÜCHER.Example./", "xn--bcher-kva.example"),
        ("http://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("http://127.0.0.1/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://2130706433:8080/", "127.0.0.1:8080"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1./", "127.0.0.1"),
        ("http://[::1]/", "[::1]"),
        ("https://[0:0:0:0:0:0:0:1]:8443/", "[::1]:8443"),
        ("http://[2001:DB8::A]/", "[2001:db8::a]"),
        ("http://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
    ],
)
def test_receiver_host_gives_one_spelling(url, host):
    assert receiver_host(url) == host


def test_receiver_host_of_two_spellings_of_one_receiver_is_equal():
    assert receiver_host("HTTP://Example.COM.:80/a?b") == receiver_host(
        "http://example.com/other"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "http://user@example.com/",
        "http://",
        "http://exa mple.com/",
        "http://example.com:0/",
        "http://a..b/",
        "http://exa_mple$.com/",
        "http://[::1/",
    ],
)
def test_receiver_host_rejects_what_split_url_rejects(url):
    with pytest.raises(AddressRejected):
        receiver_host(url)


# -- name lookups with a time limit ------------------------------------------


@pytest.fixture
def stuck_dns(monkeypatch):
    """getaddrinfo that hangs (until the test ends) for names under .stuck."""
    release = threading.Event()
    real = socket.getaddrinfo

    def lookup(host, *args, **kwargs):
        if str(host).endswith(".stuck"):
            release.wait(120)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield
    release.set()


@pytest.mark.usefixtures("stuck_dns")
def test_slow_name_is_accepted_at_creation_after_a_short_wait():
    started = time.monotonic()
    url = "https://hook.stuck/in"
    assert check_url(url, STRICT, unresolvable_ok=True, resolve_timeout=0.2) is None
    with pytest.raises(AddressRejected, match="does not resolve"):
        check_url(url, STRICT, resolve_timeout=0.2)
    assert time.monotonic() - started < 10  # each lookup would hang for 120 s


@pytest.mark.usefixtures("stuck_dns")
def test_deadline_covers_the_name_lookup_at_send_time():
    transport = Transport(Policy(), timeout=1)
    started = time.monotonic()
    try:
        outcome = transport.post("https://hook.stuck/in", b"{}", {})
    finally:
        transport.close()
    assert time.monotonic() - started < 10
    assert outcome.status is None
    assert outcome.error == "timed out after 1 s (deadline for the whole request)"


def test_a_burst_to_one_name_makes_one_lookup(dns):
    dns.answers["burst.example"] = ["127.0.0.1"]
    transport = Transport(Policy.from_entries(False, ["burst.example"]), timeout=5)
    try:
        with RawServer(answer()) as server:
            url = f"http://burst.example:{server.port}/in"
            futures = [transport.submit(url, b"{}", {}) for _ in range(20)]
            assert [f.result().status for f in futures] == [200] * 20
    finally:
        transport.close()
    assert dns.lookups == ["burst.example"]


@pytest.mark.usefixtures("stuck_dns")
def test_a_hung_lookup_holds_no_other_receiver():
    transport = Transport(LOOPBACK, timeout=3)
    try:
        with RawServer(answer()) as server:
            stuck = transport.submit("http://hook.stuck/in", b"{}", {})
            fine = [transport.submit(server.url + "/in", b"{}", {}) for _ in "abc"]
            assert [f.result().status for f in fine] == [200] * 3
            assert not stuck.done()
            assert "deadline" in stuck.result().error
    finally:
        transport.close()


# -- one deadline per request ------------------------------------------------

LOOPBACK = Policy.from_entries(False, ["127.0.0.1"])


@pytest.fixture
def transport():
    transport = Transport(LOOPBACK, timeout=1, max_response_bytes=100)
    yield transport
    transport.close()


def _timed_post(transport, url):
    started = time.monotonic()
    outcome = transport.post(url, b'{"a": 1}', {"Content-Type": "application/json"})
    return outcome, time.monotonic() - started


@pytest.mark.parametrize(
    ("handler", "scheme"),
    [
        pytest.param(trickle_head, "http", id="head one byte a second"),
        pytest.param(trickle_body, "http", id="body one byte a second"),
        pytest.param(silent, "http", id="never answers"),
        pytest.param(silent, "https", id="never starts TLS"),
    ],
)
def test_deadline_ends_the_whole_request(transport, handler, scheme):
    """Every such receiver would hold a request for 120 s; the deadline is 1 s."""
    with RawServer(handler) as server:
        url = server.url.replace("http", scheme, 1) + "/in"
        outcome, took = _timed_post(transport, url)
    assert took < 10
    assert outcome.status is None
    assert outcome.error == "timed out after 1 s (deadline for the whole request)"
    assert outcome.body == b""


def test_connection_that_hit_the_deadline_is_not_used_again(transport):
    handler = first_then(trickle_body, answer(201, body=b"fine"))
    with RawServer(handler) as server:
        late, _ = _timed_post(transport, server.url + "/in")
        fine, _ = _timed_post(transport, server.url + "/in")
        again, _ = _timed_post(transport, server.url + "/in")
        assert server.wait_until(lambda s: s.hung_up == 0 and s.requests == 3)
        assert server.connections == 2  # a new one after the deadline, then kept
    assert "deadline" in late.error
    assert (fine.status, fine.error, again.status) == (201, None, 201)


def test_a_quick_receiver_is_not_touched_by_the_deadline(transport):
    with RawServer(answer(204, body=b"")) as server:
        outcomes = [_timed_post(transport, server.url + "/in")[0] for _ in range(3)]
        assert server.connections == 1
    assert [(o.status, o.error) for o in outcomes] == [(204, None)] * 3


# -- the response head is capped ---------------------------------------------


def _headers(count, size):
    return [f"X-Header-{i}: {'v' * size}" for i in range(count)]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(_headers(64, 10), id="65 headers"),  # + Content-Length
        pytest.param(_headers(5000, 1), id="5000 headers"),
        pytest.param(_headers(1, 17 * 1024), id="one header of 17 KiB"),
        pytest.param(_headers(60, 300), id="60 headers of 300 bytes"),
    ],
)
def test_response_head_over_the_caps_fails(transport, headers):
    with RawServer(answer(200, headers)) as server:
        outcome, took = _timed_post(transport, server.url + "/in")
    assert outcome.status is None
    assert outcome.error == "response headers too large"
    assert took < 10


def test_response_head_within_the_caps_is_read(transport):
    headers = [*_headers(62, 240), "Retry-After: 7"]  # + Content-Length: 64
    with RawServer(answer(429, headers)) as server:
        outcome, _ = _timed_post(transport, server.url + "/in")
    assert (outcome.status, outcome.error, outcome.retry_after) == (429, None, 7.0)


# -- bounded pools -----------------------------------------------------------


def test_least_recently_used_pool_is_closed_beyond_max_pools():
    transport = Transport(LOOPBACK, timeout=5, max_pools=2)
    servers = [RawServer(answer()).start() for _ in range(4)]
    try:
        for server in servers[:3]:
            assert transport.post(server.url + "/in", b"{}", {}).status == 200
        # the first pool was evicted: its idle keep-alive connection closed
        assert servers[0].wait_until(lambda s: s.hung_up == 1)
        assert (servers[1].hung_up, servers[2].hung_up) == (0, 0)
        assert len(transport._pools) == 2
        assert transport.post(servers[1].url + "/again", b"{}", {}).status == 200
        assert transport.post(servers[3].url + "/in", b"{}", {}).status == 200
        assert servers[2].wait_until(lambda s: s.hung_up == 1)
        assert servers[1].connections == 1  # used recently: kept, and reused
        assert transport.post(servers[0].url + "/back", b"{}", {}).status == 200
        assert servers[0].connections == 2
        assert len(transport._pools) == 2
        assert len(transport._checked) <= 2
    finally:
        transport.close()
        for server in servers:
            server.stop()


def test_pools_on_many_loopback_addresses_stay_bounded():
    """127.0.0.x are distinct hosts; a policy for 127.0.0.0/8 allows them all."""
    transport = Transport(
        Policy.from_entries(False, ["127.0.0.0/8"]), timeout=5, max_pools=3
    )
    servers = []
    try:
        for last in range(2, 10):
            try:
                servers.append(RawServer(answer(), host=f"127.0.0.{last}").start())
            except OSError:
                pytest.skip(f"cannot listen on 127.0.0.{last}")
        for server in servers:
            assert transport.post(server.url + "/in", b"{}", {}).status == 200
        assert len(transport._pools) == 3
        for server in servers[:-3]:
            assert server.wait_until(lambda s: s.hung_up == 1)
    finally:
        transport.close()
        for server in servers:
            server.stop()


# -- ports of allowed hosts, through real connections ------------------------


def test_allowed_host_with_port_lets_only_that_port_through():
    with RawServer(answer()) as right, RawServer(answer()) as other:
        policy = Policy.from_entries(False, [f"127.0.0.1:{right.port}"])
        transport = Transport(policy, timeout=5)
        try:
            assert transport.post(right.url + "/in", b"{}", {}).status == 200
            refused = transport.post(other.url + "/in", b"{}", {})
        finally:
            transport.close()
        assert refused.status is None
        assert refused.error == f"address rejected: {NOT_PUBLIC}"
        assert other.connections == 0


def _ipv6_loopback_works():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback here")
def test_allowed_ipv6_host_with_port():
    with (
        RawServer(answer(), host="::1") as right,
        RawServer(answer(), host="::1") as other,
    ):
        policy = Policy.from_entries(False, [f"[::1]:{right.port}"])
        transport = Transport(policy, timeout=5)
        try:
            assert transport.post(right.url + "/in", b"{}", {}).status == 200
            refused = transport.post(other.url + "/in", b"{}", {})
        finally:
            transport.close()
        assert refused.error == f"address rejected: {NOT_PUBLIC}"
        assert other.connections == 0


# -- answers of exempt receivers are withheld --------------------------------


def test_exempt_is_true_only_for_addresses_reached_by_the_policy(dns):
    assert check_url("http://127.0.0.1:9/", LOOPBACK).exempt is True
    assert check_url("http://[::1]:9/", Policy(allow_private=True)).exempt is True
    assert check_url("https://93.184.216.34/", LOOPBACK).exempt is False
    dns.answers["half.example"] = ["93.184.216.34", "127.0.0.1"]
    assert check_url("http://half.example/", LOOPBACK).exempt is True
    dns.answers["named.example"] = ["10.1.1.1"]
    named = Policy.from_entries(False, ["named.example"])
    assert check_url("http://named.example/", named).exempt is True


def test_answer_of_an_exempt_receiver_is_withheld(transport):
    with RawServer(answer(200, body=b"internal secret")) as server:
        outcomes = [_timed_post(transport, server.url + "/in")[0] for _ in range(2)]
        assert server.connections == 1  # a short answer is read; the connection kept
    for outcome in outcomes:
        assert (outcome.status, outcome.error) == (200, None)
        assert (outcome.body, outcome.body_withheld) == (b"", True)


GZIP_BOMB = gzip.compress(b"\0" * 50_000_000, mtime=0)


class _AsIfPublic(Transport):
    """Treats loopback as public: public receivers cannot be reached from here."""

    async def _target(self, url):
        return dataclasses.replace(await super()._target(url), exempt=False)


@pytest.mark.parametrize(
    ("body", "headers", "kept"),
    [
        pytest.param(b"thanks", [], b"thanks", id="small, kept whole"),
        pytest.param(b"ok\0\0done", [], b"ok\0\0done", id="NUL bytes, raw"),
        pytest.param(b"x" * 5_000_000, [], b"x" * 100, id="huge, capped"),
        pytest.param(
            GZIP_BOMB,
            ["Content-Encoding: gzip"],
            GZIP_BOMB[:100],
            id="gzip bomb, raw and capped",
        ),
    ],
)
def test_answer_of_a_public_receiver_is_kept_up_to_the_cap(body, headers, kept):
    transport = _AsIfPublic(LOOPBACK, timeout=5, max_response_bytes=100)
    try:
        with RawServer(answer(200, headers, body)) as server:
            outcome = transport.post(server.url + "/in", b"{}", {})
            follow = transport.post(server.url + "/in", b"{}", {})
            reused = server.connections == 1
    finally:
        transport.close()
    assert (outcome.status, outcome.body_withheld, outcome.body) == (200, False, kept)
    assert follow.status == 200
    assert reused is (len(body) <= 100)  # unread data left: never reused


# -- framing of answers, and when a connection is kept ----------------------


def answer_bytes(status: int) -> bytes:
    return f"HTTP/1.1 {status} Fine\r\nContent-Length: 2\r\n\r\nok".encode()


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nWiki\r\n5;name=value\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


@pytest.mark.parametrize(
    ("response", "status", "body", "kept"),
    [
        pytest.param(CHUNKED, 200, b"Wikipedia", True, id="chunked, with trailer"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"50\r\n" + b"c" * 80 + b"\r\n") * 3
            + b"0\r\n\r\n",
            200,
            b"c" * 100,
            False,
            id="chunked beyond the cap",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 102 Processing\r\nX-Step: 1\r\n\r\n"
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
            201,
            b"done",
            True,
            id="interim answers skipped",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            200,
            b"ok",
            False,
            id="Connection: close",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            200,
            b"ok",
            False,
            id="HTTP/1.0",
        ),
        pytest.param(
            b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True, id="204, no body"
        ),
    ],
)
def test_answers_are_read_by_their_framing(response, status, body, kept):
    transport = _AsIfPublic(LOOPBACK, timeout=5, max_response_bytes=100)
    try:
        with RawServer(raw(response)) as server:
            outcomes = [transport.post(server.url + "/in", b"{}", {}) for _ in "ab"]
            connections = server.connections
    finally:
        transport.close()
    assert [(o.status, o.error, o.body) for o in outcomes] == [(status, None, body)] * 2
    assert connections == (1 if kept else 2)


def test_answer_delimited_by_closing_is_read_up_to_the_cap():
    transport = _AsIfPublic(LOOPBACK, timeout=5, max_response_bytes=100)
    response = b"HTTP/1.1 200 OK\r\n\r\n" + b"e" * 150
    try:
        with RawServer(raw(response, then_close=True)) as server:
            outcomes = [transport.post(server.url + "/in", b"{}", {}) for _ in "ab"]
            assert server.connections == 2
    finally:
        transport.close()
    assert [(o.status, o.body) for o in outcomes] == [(200, b"e" * 100)] * 2


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", id="not HTTP"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="four-digit status"),
        pytest.param(b"HTTP/2 200\r\n\r\n", id="HTTP/2"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            id="two lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
            id="negative chunk",
        ),
    ],
)
def test_malformed_answer_is_a_broken_connection(transport, response):
    """A status read before the body broke is kept: the receiver did answer."""
    with RawServer(raw(response)) as server:
        outcome, _ = _timed_post(transport, server.url + "/in")
        outcome_again, _ = _timed_post(transport, server.url + "/in")
        assert server.connections == 2  # a broken connection is never reused
    assert outcome.error == outcome_again.error == "connection broken"
    assert outcome.status in (None, 200)


def test_kept_connection_closed_by_the_receiver_is_replaced_once():
    """The request is sent again on a new connection (at least once, as ever)."""
    transport = Transport(LOOPBACK, timeout=5)
    try:
        with RawServer(once_per_connection(answer_bytes(201))) as server:
            first = transport.post(server.url + "/in", b"{}", {})
            second = transport.post(server.url + "/in", b"{}", {})
            assert server.wait_until(lambda s: s.requests == 3)
            assert server.connections == 2
    finally:
        transport.close()
    assert (first.status, second.status, second.error) == (201, 201, None)


def test_new_connection_closed_without_an_answer_is_not_sent_again(transport):
    with RawServer(hang_up) as server:
        outcome, _ = _timed_post(transport, server.url + "/in")
        assert server.connections == 1
    assert (outcome.status, outcome.error) == (None, "connection broken")


# -- failures are described without the address ------------------------------


def test_refused_connection_names_the_reason_not_the_address(transport):
    port = free_port()
    outcome, _ = _timed_post(transport, f"http://127.0.0.1:{port}/in?token=s3cret")
    assert outcome.error == "connection failed: Connection refused"
    assert str(port) not in outcome.error


def test_tls_to_a_receiver_that_does_not_speak_it_is_a_tls_error(transport):
    with RawServer(speak_first(answer_bytes(400))) as server:
        url = server.url.replace("http", "https", 1) + "/in"
        outcome, _ = _timed_post(transport, url)
    assert (outcome.status, outcome.error) == (None, "TLS error")


def test_header_with_a_line_break_is_never_sent(transport):
    with RawServer(answer()) as server:
        outcome = transport.post(
            server.url + "/in", b"{}", {"X-Evil": "a\r\nX-Injected: 1"}
        )
        assert server.requests == 0
    assert (outcome.status, outcome.error) == (None, "ValueError")


def test_request_line_is_ascii_and_host_is_ours():
    transport = Transport(LOOPBACK, timeout=5)
    try:
        with Receiver() as receiver:
            outcome = transport.post(
                receiver.url + "/in/bücher?q=ä", b"{}", {"host": "evil.example"}
            )
            (got,) = receiver.received
    finally:
        transport.close()
    assert outcome.status == 200
    assert got.path == "/in/b%C3%BCcher?q=%C3%A4"
    assert got.headers["Host"] == receiver.url.removeprefix("http://")


def test_retry_after_as_a_date():
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    headers = [f"Retry-After: {when}"]
    transport = Transport(LOOPBACK, timeout=5)
    try:
        with RawServer(answer(503, headers)) as server:
            outcome = transport.post(server.url + "/in", b"{}", {})
    finally:
        transport.close()
    assert outcome.status == 503
    assert 100 < outcome.retry_after <= 120


# -- many requests on one event loop -----------------------------------------


def test_at_most_concurrency_requests_are_in_flight():
    transport = Transport(LOOPBACK, timeout=10, concurrency=5, pool_size=5)
    try:
        with RawServer(answer(after=0.2)) as server:
            futures = [
                transport.submit(server.url + "/in", b"{}", {}) for _ in range(20)
            ]
            outcomes = [future.result() for future in futures]
            assert server.connections == 5  # five at once, then reused
    finally:
        transport.close()
    assert [o.status for o in outcomes] == [200] * 20


def test_a_hanging_receiver_delays_no_other():
    transport = Transport(LOOPBACK, timeout=5, concurrency=10)
    try:
        with RawServer(silent) as hanging, RawServer(answer()) as quick:
            hung = transport.submit(hanging.url + "/in", b"{}", {})
            fine = [transport.submit(quick.url + "/in", b"{}", {}) for _ in range(20)]
            assert [f.result().status for f in fine] == [200] * 20
            assert not hung.done()
            assert "deadline" in hung.result().error
    finally:
        transport.close()


def test_close_ends_requests_in_flight():
    transport = Transport(LOOPBACK, timeout=60)
    with RawServer(silent) as server:
        future = transport.submit(server.url + "/in", b"{}", {})
        assert server.wait_until(lambda s: s.connections == 1)
        transport.close()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=10)


def test_sockets_in_use_and_idle_never_outnumber_concurrency():
    transport = Transport(LOOPBACK, timeout=5, concurrency=2, pool_size=2)
    servers = [RawServer(answer()).start() for _ in range(3)]
    try:
        for server in servers[:2]:
            assert transport.post(server.url + "/in", b"{}", {}).status == 200
        assert (servers[0].hung_up, servers[1].hung_up) == (0, 0)
        assert transport.post(servers[2].url + "/in", b"{}", {}).status == 200
        assert servers[0].wait_until(lambda s: s.hung_up == 1)  # the oldest idle
        assert servers[1].hung_up == 0
    finally:
        transport.close()
        for server in servers:
            server.stop()


# -- through the actions and the delivery worker ----------------------------


def _attempts(hook_id):
    return helpers.call_action("webhook_delivery_list", id=hook_id)


@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.ckan_config("ckanext.webhooks.allowed_hosts", "")
class TestDefaultPolicyInActions:
    @pytest.mark.parametrize(
        "address",
        [
            "http://127.0.0.1:5000/api",
            "http://localhost:8983/solr/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]:6379/",
            "http://10.0.0.5/hook",
            "ftp://example.com/",
            "https://user:secret@example.com/",
        ],
    )
    def test_create_rejects_with_a_clear_validation_error(self, address):
        with pytest.raises(helpers.logic.ValidationError) as error:
            helpers.call_action(
                "webhook_create", topic="dataset/create", address=address
            )
        (message,) = error.value.error_dict["address"]
        assert message.startswith("The address ")
        assert "https://example.com/callback" in message

    def test_update_rejects_too(self, dns):
        dns.answers["public.example"] = ["93.184.216.34"]
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address="https://public.example/in"
        )
        with pytest.raises(helpers.logic.ValidationError) as error:
            helpers.call_action(
                "webhook_update", id=hook_id, address="http://192.168.0.1/"
            )
        assert NOT_PUBLIC in error.value.error_dict["address"][0]
        hook = helpers.call_action("webhook_show", id=hook_id)
        assert hook["address"] == "https://public.example/in"

    @pytest.mark.ckan_config("ckanext.webhooks.allow_private_addresses", True)
    def test_allow_private_addresses_lets_intranet_receivers_in(self, receiver):
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address=receiver.url + "/in"
        )
        assert helpers.call_action("webhook_test", id=hook_id)["success"] is True
        assert receiver.count == 1

    def test_receiver_on_loopback_gets_nothing_under_the_default_policy(
        self, receiver, dns, run_jobs
    ):
        """webhook_test goes through the same checks as every delivery."""
        dns.answers["looks-public.example"] = ["93.184.216.34"]
        hook_id = helpers.call_action(
            "webhook_create",
            topic="*",
            address=f"http://looks-public.example:{receiver.port}/in",
        )
        dns.answers["looks-public.example"] = ["127.0.0.1"]
        result = helpers.call_action("webhook_test", id=hook_id)
        assert result["success"] is False
        assert result["status_code"] is None
        assert "address rejected" in result["error"]
        assert receiver.count == 0


@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.ckan_config("ckanext.webhooks.allowed_hosts", "")
class TestDnsRebinding:
    @pytest.mark.parametrize("later", ["127.0.0.1", "10.9.8.7"])
    def test_name_that_turns_private_after_create_is_refused_at_delivery(
        self, receiver, dns, run_jobs, later
    ):
        dns.answers["rebind.example"] = ["93.184.216.34"]
        hook_id = helpers.call_action(
            "webhook_create",
            topic="dataset/create",
            address=f"http://rebind.example:{receiver.port}/in?key=1",
        )
        dns.answers["rebind.example"] = [later]
        factories.Dataset()
        run_jobs()

        assert receiver.count == 0
        (attempt,) = _attempts(hook_id)
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("address rejected")
        assert attempt["outcome"] == "retry scheduled"
        assert "rebind.example" in dns.lookups


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPinning:
    def test_connection_goes_to_the_checked_address_without_a_new_lookup(
        self, receiver, dns, run_jobs
    ):
        """Only 127.0.0.1 is allowed (test.ini); any second lookup gets 10.x."""
        dns.answers["pinned.example"] = ["127.0.0.1"]
        hook_id = helpers.call_action(
            "webhook_create",
            topic="dataset/create",
            address=f"http://pinned.example:{receiver.port}/in",
        )
        dns.lookups.clear()
        dns.later["pinned.example"] = ["10.9.8.7"]
        factories.Dataset()
        run_jobs()

        assert receiver.wait_for(1, 5)
        assert dns.lookups == ["pinned.example"]
        host = receiver.received[0].headers["Host"]
        assert host == f"pinned.example:{receiver.port}"
        assert _attempts(hook_id)[0]["status_code"] == 200


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestResponses:
    def test_redirect_is_not_followed_and_counts_as_failure(self, receiver, run_jobs):
        receiver.script.append(
            Reply(status=302, headers={"Location": receiver.url + "/elsewhere"})
        )
        hook_id = helpers.call_action(
            "webhook_create", topic="dataset/create", address=receiver.url + "/in"
        )
        factories.Dataset()
        run_jobs()

        assert [r.path for r in receiver.received] == ["/in"]
        (attempt,) = _attempts(hook_id)
        assert attempt["status_code"] == 302
        assert attempt["outcome"] == "retry scheduled"
        hook = helpers.call_action("webhook_show", id=hook_id)
        assert hook["last_delivery_status"] == "302"

    def test_redirect_to_a_private_address_is_not_followed(self, receiver):
        receiver.script.append(
            Reply(status=307, headers={"Location": "http://169.254.169.254/"})
        )
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address=receiver.url + "/in"
        )
        result = helpers.call_action("webhook_test", id=hook_id)
        assert result["success"] is False
        assert result["status_code"] == 307
        assert receiver.count == 1

    def test_answer_of_an_exempt_receiver_is_not_logged(self, receiver, run_jobs):
        """127.0.0.1 is reachable only through allowed_hosts: its answer is private."""
        receiver.script.append(Reply(status=201, body=b"secret intranet page"))
        hook_id = helpers.call_action(
            "webhook_create", topic="dataset/create", address=receiver.url + "/in"
        )
        factories.Dataset()
        run_jobs()

        (attempt,) = _attempts(hook_id)
        assert attempt["status_code"] == 201
        assert attempt["outcome"] == "success"
        assert not attempt["response"]  # withheld: nothing stored

    def test_webhook_test_of_an_exempt_receiver_shows_no_answer(self, receiver):
        receiver.script.append(Reply(status=200, body=b"x" * 5_000_000))
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address=receiver.url + "/in"
        )
        result = helpers.call_action("webhook_test", id=hook_id)
        assert (result["success"], result["status_code"]) == (True, 200)
        assert "xxxxxxxxxx" not in str(result)
        assert not _attempts(hook_id)[0]["response"]
