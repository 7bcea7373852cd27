"""SSRF rules of ckanext.webhooks.http, checked on real addresses and sockets.

Only the resolver is replaced (``socket.getaddrinfo``) where a test needs a
host name to resolve to a given address; every connection is real.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks import http
from ckanext.webhooks.http import AddressRejected, Policy, address_problem, check_url
from tests.receiver import Reply

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
def test_check_url_rejects_literal_non_public_hosts(address):
    with pytest.raises(AddressRejected, match="receivers must be public"):
        check_url(f"http://{_literal(address)}:8080/hook", STRICT)


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
        monkeypatch.setattr(http.socket, "getaddrinfo", self)

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
    with pytest.raises(AddressRejected, match="private"):
        check_url("https://mixed.example/hook", STRICT)


def test_ipv6_answers_are_checked_too(dns):
    dns.answers["v6.example"] = ["2606:4700:4700::1111", "::ffff:127.0.0.1"]
    with pytest.raises(AddressRejected, match="loopback"):
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


def test_allowed_hosts_entries_that_are_neither_names_nor_networks_are_ignored():
    policy = Policy.from_entries(False, ["", "not a network/99"])
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
        assert "private" in error.value.error_dict["address"][0]
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

    @pytest.mark.ckan_config("ckanext.webhooks.max_response_bytes", 100)
    def test_huge_response_body_is_capped_in_the_log(self, receiver, run_jobs):
        receiver.script.append(Reply(status=200, body=b"x" * 5_000_000))
        hook_id = helpers.call_action(
            "webhook_create", topic="dataset/create", address=receiver.url + "/in"
        )
        factories.Dataset()
        run_jobs()

        (attempt,) = _attempts(hook_id)
        assert attempt["status_code"] == 200
        assert attempt["outcome"] == "success"
        assert attempt["response"] == "x" * 100

    @pytest.mark.ckan_config("ckanext.webhooks.max_response_bytes", 100)
    def test_compressed_response_is_capped_without_being_inflated(self, receiver):
        """A gzip bomb sent unasked is stored as at most the cap, raw."""
        bomb = gzip.compress(b"\0" * 50_000_000)
        receiver.script.append(
            Reply(status=200, headers={"Content-Encoding": "gzip"}, body=bomb)
        )
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address=receiver.url + "/in"
        )
        assert helpers.call_action("webhook_test", id=hook_id)["success"] is True
        (attempt,) = _attempts(hook_id)
        # The gzip magic (1f 8b) as stored: raw, not inflated, at most the cap.
        assert attempt["response"].startswith("\x1f\ufffd\x08")
        assert len(attempt["response"]) <= 100

    def test_response_with_nul_bytes_is_recorded(self, receiver):
        """PostgreSQL text cannot hold NUL: it must not break the record."""
        receiver.script.append(Reply(status=200, body=b"ok\0\0done"))
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address=receiver.url + "/in"
        )
        assert helpers.call_action("webhook_test", id=hook_id)["success"] is True
        assert _attempts(hook_id)[0]["response"] == "ok\ufffd\ufffddone"

    def test_small_response_is_kept_whole_and_connection_reused(self, receiver):
        receiver.script.append(Reply(status=201, body=b"thanks"))
        hook_id = helpers.call_action(
            "webhook_create", topic="*", address=receiver.url + "/in"
        )
        assert helpers.call_action("webhook_test", id=hook_id)["status_code"] == 201
        assert _attempts(hook_id)[0]["response"] == "thanks"
