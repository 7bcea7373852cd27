"""Limits as a stranger probes them: per receiver, per caller, per webhook.

* ``max_webhooks_per_user`` counts a logged-in user's webhooks (sysadmins
  are exempt).
* ``max_webhooks_per_address`` counts the anonymous webhooks of all callers
  per receiver: the normalised host and port, whatever path, query, case,
  trailing dot or explicit default port the address is written with.
* ``max_tests_per_minute`` counts ``webhook_test`` pings per webhook and per
  caller (the user, or the remote address of an anonymous caller), in Redis,
  so every web process shares the count.
* A receiver that answered 410 Gone has asked to be left alone: an anonymous
  webhook it disabled cannot be switched back on by whoever holds the id.

Redis counters outlive a test by a minute or two, so every test counts fresh
webhooks, fresh users and fresh client addresses.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ckan.model as model
import ckanapi
import pytest
import requests
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.model import Webhook
from tests.live import start_live_site
from tests.support.receivers.recording import Reply

PASSWORD = "correct horse battery"


def context(user: dict | None) -> dict[str, Any]:
    return {"user": user["name"] if user else "", "ignore_auth": False}


def create(address: str, user: dict | None = None, topic: str = "*") -> tuple:
    """("ok", id) or ("invalid", error dict) of a create as ``user``."""
    try:
        return "ok", helpers.call_action(
            "webhook_create", context=context(user), topic=topic, address=address
        )
    except tk.ValidationError as error:
        return "invalid", error.error_dict


def update(hook_id: str, user: dict | None = None, **changes: Any) -> tuple:
    try:
        return "ok", helpers.call_action(
            "webhook_update", context=context(user), id=hook_id, **changes
        )
    except tk.ValidationError as error:
        return "invalid", error.error_dict


def shown(hook_id: str) -> dict[str, Any]:
    admin = factories.Sysadmin()
    return helpers.call_action(
        "webhook_show", context={"user": admin["name"]}, id=hook_id
    )


def spellings(port: int) -> dict[str, list[str]]:
    """Four spellings of one receiver each: three fill it, the fourth is refused."""
    here = f"127.0.0.1:{port}"
    return {
        "path, query and scheme case": [
            f"http://{here}/a",
            f"http://{here}/b?x=1",
            f"HTTP://{here}/",
            f"http://{here}/c",
        ],
        "host case, trailing dot, default https port": [
            "https://hooks.example/a",
            "https://HOOKS.EXAMPLE/b",
            "https://hooks.example.:443/c",
            "https://Hooks.Example/d",
        ],
        "default http port": [
            "http://hooks.example/a",
            "http://hooks.example:80/b",
            "http://HOOKS.example./c",
            "http://hooks.example:80/d?again",
        ],
        "localhost spellings": [
            f"http://localhost:{port}/a",
            f"http://LOCALHOST:{port}/b",
            f"http://localhost.:{port}/c",
            f"http://LocalHost:{port}/d",
        ],
        "IDNA": [
            "https://bücher.example/a",
            "https://xn--bcher-kva.example/b",
            "https://BÜCHER.example/c",
            "https://bücher.example./d",
        ],
    }


SPELLINGS = list(spellings(0))
LIMITS = (
    pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 3),
    pytest.mark.ckan_config("ckanext.webhooks.allowed_hosts", "127.0.0.1 localhost"),
    pytest.mark.usefixtures("with_plugins", "clean_db"),
)


def _with_limits(cls):
    for mark in LIMITS:
        cls = mark(cls)
    return cls


@_with_limits
class TestAnonymousWebhooksPerReceiver:
    @pytest.mark.parametrize("kind", SPELLINGS)
    def test_spellings_of_one_receiver_count_together(self, kind, receiver):
        *fill, extra = spellings(receiver.port)[kind]
        for address in fill:
            assert create(address)[0] == "ok", address
        got = create(extra)
        assert got[0] == "invalid", extra
        assert "address" in got[1]

    def test_other_receivers_and_logged_in_users_are_not_held_back(self, receiver):
        *fill, extra = spellings(receiver.port)["path, query and scheme case"]
        for address in fill:
            create(address)
        assert create("https://other.example/")[0] == "ok"
        assert create(f"http://127.0.0.1:{receiver.port + 1}/")[0] == "ok"
        assert create(extra, user=factories.User())[0] == "ok"

    def test_moving_a_webhook_onto_a_full_receiver_is_refused(self, receiver):
        for address in spellings(0)["host case, trailing dot, default https port"][:3]:
            assert create(address)[0] == "ok"
        _, elsewhere = create("https://elsewhere.example/hook")
        got = update(elsewhere, address="https://HOOKS.example.:443/moved")
        assert got[0] == "invalid"
        assert "address" in got[1]
        model.Session.rollback()  # as at the end of the refused request
        assert shown(elsewhere)["address"] == "https://elsewhere.example/hook"

    def test_a_refused_update_leaves_nothing_to_commit(self, receiver):
        """Beyond the contract: a caller in the same session (a plugin that
        catches the ValidationError, say) must not commit the refused change."""
        for address in spellings(0)["host case, trailing dot, default https port"][:3]:
            assert create(address)[0] == "ok"
        _, elsewhere = create("https://elsewhere.example/hook")
        got = update(
            elsewhere, topic="dataset/update", address="https://hooks.example/moved"
        )
        assert got[0] == "invalid"
        model.Session.commit()
        after = shown(elsewhere)
        assert after["address"] == "https://elsewhere.example/hook"
        assert after["topic"] == "*"

    def test_a_webhook_may_move_within_its_own_receiver(self, receiver):
        ids = [
            create(address)[1]
            for address in spellings(0)["host case, trailing dot, default https port"][
                :3
            ]
        ]
        assert update(ids[0], address="https://hooks.example/other")[0] == "ok"

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_user", 2)
    def test_logged_in_users_count_per_user_instead(self, receiver):
        for address in spellings(0)["IDNA"][:3]:
            create(address)
        user = factories.User()
        assert create("https://bücher.example/mine/1", user)[0] == "ok"
        _, moved = create("https://elsewhere.example/", user)
        assert update(moved, user, address="https://BÜCHER.example/mine/2")[0] == "ok"
        got = create("https://bücher.example/mine/3", user)
        assert got[0] == "invalid"
        assert "owner" in got[1]

    def test_numeric_spellings_of_an_address_count_together(self, receiver):
        """Beyond the contract: 127.1, 2130706433 and 0x7f000001 are 127.0.0.1."""
        port = receiver.port
        addresses = [
            f"http://127.0.0.1:{port}/a",
            f"http://127.1:{port}/b",
            f"http://2130706433:{port}/c",
            f"http://0x7f000001:{port}/d",
            f"http://0177.0.0.1:{port}/e",
            f"http://127.0.1:{port}/f",
        ]
        results = [create(address) for address in addresses]
        accepted = [a for a, r in zip(addresses, results, strict=True) if r[0] == "ok"]
        assert len(accepted) <= 3, accepted
        assert all("address" in r[1] for r in results if r[0] != "ok")


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_parallel_creates_of_different_spellings_cannot_pass_the_limit(tmp_path):
    """The limit holds when 12 strangers create at once, each spelling it anew."""
    site = start_live_site(tmp_path, **{"ckanext.webhooks.max_webhooks_per_address": 3})
    try:
        url = f"{site.url}/api/3/action/webhook_create"
        hosts = [
            "hooks.example",
            "HOOKS.example",
            "hooks.example.",
            "Hooks.Example:443",
        ]
        bodies = [
            {"topic": "*", "address": f"https://{hosts[n % 4]}/{n}"} for n in range(12)
        ]

        def post(body):
            return requests.post(url, json=body, timeout=60).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(post, bodies))
    finally:
        site.stop()
    assert statuses.count(200) == 3, statuses
    assert statuses.count(409) == 9, statuses
    anonymous = model.Session.execute(
        text("SELECT count(*) FROM webhook WHERE owner_id IS NULL")
    ).scalar()
    model.Session.commit()
    assert anonymous == 3


# -- 410 Gone -------------------------------------------------------------------
def _gone(receiver, run_jobs, *owners: dict | None) -> list[str]:
    """A webhook of each of ``owners`` whose receiver answered 410 Gone."""
    hooks = [
        helpers.call_action(
            "webhook_create",
            context={"user": owner["name"] if owner else "", "ignore_auth": True},
            topic="dataset/create",
            address=f"{receiver.url}/gone/{secrets.token_hex(4)}",
        )
        for owner in owners
    ]
    receiver.script += [Reply(410) for _ in hooks]
    factories.Dataset()
    run_jobs()
    for hook in hooks:
        state = shown(hook)
        assert state["active"] is False
        assert "410" in state["disabled_reason"]
    return hooks


@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestGoneIsFinalForAnonymousWebhooks:
    def test_holding_the_id_does_not_undo_a_410(self, receiver, run_jobs):
        [hook] = _gone(receiver, run_jobs, None)
        for caller in (None, factories.User()):
            got = update(hook, caller, active=True)
            assert got[0] == "invalid", caller
            assert "active" in got[1]
        assert shown(hook)["active"] is False

    def test_the_owner_or_a_sysadmin_may_switch_theirs_back_on(
        self, receiver, run_jobs
    ):
        owner = factories.User()
        hooks = _gone(receiver, run_jobs, owner, owner)
        for hook, who in zip(hooks, (owner, factories.Sysadmin()), strict=True):
            assert update(hook, who, active=True)[0] == "ok"
            assert shown(hook)["active"] is True

    def test_anonymous_webhooks_disabled_by_hand_come_back_on(self, receiver):
        hook = create(receiver.url + "/paused")[1]
        assert update(hook, None, active=False)[0] == "ok"
        assert update(hook, None, active=True)[0] == "ok"
        assert shown(hook)["active"] is True

    def test_the_web_form_refuses_it_without_a_server_error(
        self, app, receiver, run_jobs
    ):
        [hook] = _gone(receiver, run_jobs, None)
        client = app.test_client()
        token = _csrf_token(client)
        response = client.post(
            f"/webhooks/{hook}/active", data={"_csrf_token": token, "active": "true"}
        )
        assert response.status_code < 500
        assert shown(hook)["active"] is False

    def test_a_gone_receiver_is_not_pinged_through_the_anonymous_webhook(
        self, receiver, run_jobs
    ):
        """Beyond the contract: the receiver asked for nothing more; holding
        the id must not let anyone keep sending it test pings."""
        [hook] = _gone(receiver, run_jobs, None)
        before = receiver.count
        for caller in (None, factories.User()):
            try:
                helpers.call_action("webhook_test", context=context(caller), id=hook)
            except tk.ValidationError as error:
                assert set(error.error_dict) <= {"id", "active"}, error.error_dict
        assert receiver.count == before

    def test_a_new_anonymous_webhook_does_not_undo_a_410(self, receiver, run_jobs):
        """Beyond the contract: the receiver's 410 is otherwise undone by
        subscribing it again, which any stranger can do."""
        [hook] = _gone(receiver, run_jobs, None)
        got = create(shown(hook)["address"])
        assert got[0] == "invalid"
        assert "address" in got[1]


def _csrf_token(client) -> str:
    import re

    page = client.get("/user/login").body
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the login page"
    return found.group(1)


# -- test pings per minute ----------------------------------------------------------
def ping(hook_id: str, user: dict | None) -> tuple:
    """("ok", result) for a ping that arrived, else what stopped it."""
    try:
        result = helpers.call_action("webhook_test", context=context(user), id=hook_id)
        return ("ok" if result["success"] else "failed"), result
    except tk.ValidationError as error:
        return "invalid", error.error_dict
    except tk.ObjectNotFound:
        return "not found", None


def ping_from(app, address: str, hook_id: str) -> tuple:
    """An anonymous ping through the API from the client address ``address``."""
    response = app.post(
        "/api/3/action/webhook_test",
        json={"id": hook_id},
        environ_overrides={"REMOTE_ADDR": address},
    )
    body = response.json
    if body["success"]:
        return ("ok" if body["result"]["success"] else "failed"), body["result"]
    return response.status_code, body["error"]


def client_address() -> str:
    """A client address no earlier test (or run) has pinged from."""
    return "10." + ".".join(str(secrets.randbelow(254) + 1) for _ in range(3))


def _says_the_limit(error: dict, field: str, limit: int) -> None:
    assert field in error, error
    message = " ".join(error[field])
    assert str(limit) in message and "minute" in message, message


# The per-host send rate is not what these tests count.
@pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 2)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPingsPerMinute:
    def _hook(self, receiver, owner: dict | None) -> str:
        return helpers.call_action(
            "webhook_create",
            context={"user": owner["name"] if owner else "", "ignore_auth": True},
            topic="*",
            address=f"{receiver.url}/ping/{secrets.token_hex(4)}",
        )

    def test_per_webhook(self, receiver):
        owner, admin = factories.User(), factories.Sysadmin()
        hook = self._hook(receiver, owner)
        assert [ping(hook, who)[0] for who in (owner, admin)] == ["ok", "ok"]
        got = ping(hook, owner)
        assert got[0] == "invalid"
        _says_the_limit(got[1], "id", 2)
        assert receiver.count == 2

    def test_per_webhook_whoever_calls(self, app, receiver):
        hook = self._hook(receiver, None)
        got = [ping_from(app, client_address(), hook) for _ in range(3)]
        assert [g[0] for g in got] == ["ok", "ok", 409], got
        _says_the_limit(got[2][1], "id", 2)
        assert receiver.count == 2

    def test_per_logged_in_caller(self, receiver):
        user = factories.User()
        hooks = [self._hook(receiver, user) for _ in range(3)]
        assert [ping(h, user)[0] for h in hooks[:2]] == ["ok", "ok"]
        got = ping(hooks[2], user)
        assert got[0] == "invalid"
        _says_the_limit(got[1], "caller", 2)
        assert receiver.count == 2

    def test_per_anonymous_caller_by_address(self, app, receiver):
        hooks = [self._hook(receiver, None) for _ in range(3)]
        first, second = client_address(), client_address()
        got = [ping_from(app, first, hook) for hook in hooks]
        assert [g[0] for g in got] == ["ok", "ok", 409], got
        _says_the_limit(got[2][1], "caller", 2)
        assert ping_from(app, second, hooks[2])[0] == "ok"
        assert receiver.count == 3

    def test_forged_forwarding_headers_are_not_a_new_caller(self, app, receiver):
        """CKAN trusts no proxy headers unless configured: neither may this."""
        hooks = [self._hook(receiver, None) for _ in range(3)]
        address = client_address()
        got = []
        for n, hook in enumerate(hooks):
            response = app.post(
                "/api/3/action/webhook_test",
                json={"id": hook},
                headers={
                    "X-Forwarded-For": f"192.0.2.{n + 1}",
                    "X-Real-IP": f"198.51.100.{n + 1}",
                    "Forwarded": f"for=203.0.113.{n + 1}",
                },
                environ_overrides={"REMOTE_ADDR": address},
            )
            got.append((response.status_code, response.json.get("error")))
        assert [status for status, _ in got] == [200, 200, 409], got
        _says_the_limit(got[2][1], "caller", 2)

    def test_one_ipv6_network_is_one_anonymous_caller(self, app, receiver):
        """Beyond the contract: whoever has an IPv6 /64 (every home line) has
        2**64 addresses; counting each as a caller means no limit at all."""
        hooks = [self._hook(receiver, None) for _ in range(3)]
        network = f"2001:db8:{secrets.randbits(16):x}:{secrets.randbits(16):x}::"
        got = [
            ping_from(app, f"{network}{n + 1:x}", hook) for n, hook in enumerate(hooks)
        ]
        assert [g[0] for g in got] == ["ok", "ok", 409], got
        _says_the_limit(got[2][1], "caller", 2)

    def test_a_stranger_cannot_spend_the_owners_allowance(self, receiver):
        """Nor learn that the webhook exists: never an error about its id."""
        owner, stranger = factories.User(), factories.User()
        hook = self._hook(receiver, owner)
        for _ in range(5):
            got = ping(hook, stranger)
            assert got[0] == "not found" or (
                got[0] == "invalid" and set(got[1]) == {"caller"}
            ), got
        assert ping(hook, owner)[0] == "ok"
        assert receiver.count == 1

    def test_a_strangers_redeliveries_do_not_spend_it_either(self, receiver, run_jobs):
        owner, stranger = factories.User(), factories.User()
        hook = self._hook(receiver, owner)
        factories.Dataset()
        run_jobs()
        admin = {"user": factories.Sysadmin()["name"]}
        [entry] = helpers.call_action("webhook_delivery_list", context=admin, id=hook)
        for data in ({"id": entry["id"]}, {"id": entry["event_id"]}) * 3:
            for named in ({}, {"webhook_id": hook}):
                try:
                    helpers.call_action(
                        "webhook_redeliver", context=context(stranger), **data, **named
                    )
                except tk.ObjectNotFound:
                    continue
                except tk.ValidationError as error:
                    assert set(error.error_dict) == {"caller"}, error.error_dict
                    continue
                raise AssertionError("a stranger redelivered another user's event")
        assert [ping(hook, owner)[0] for _ in range(2)] == ["ok", "ok"]

    def test_counted_for_all_web_processes_together(self, tmp_path, receiver):
        """Two pings in this process, the third through a live ``ckan run``.

        The count is per calendar minute: the live site is started first, so
        the three pings take a fraction of a second, and a run whose pings
        straddle a minute's end is tried again with a fresh webhook.
        """
        owner, admin = factories.User(), factories.Sysadmin()
        token = factories.APIToken(user=owner["name"])["token"]
        site = start_live_site(
            tmp_path,
            **{
                "ckanext.webhooks.max_tests_per_minute": 2,
                "ckanext.webhooks.max_rate_per_host": 0,
                # One site: its web processes share the count.
                "ckan.site_id": tk.config["ckan.site_id"],
            },
        )
        remote = ckanapi.RemoteCKAN(site.url, apikey=token)
        try:
            for _ in range(3):
                hook = self._hook(receiver, owner)
                minute = int(time.time() // 60)
                assert [ping(hook, admin)[0] for _ in range(2)] == ["ok", "ok"]
                try:
                    remote.action.webhook_test(id=hook)
                except ckanapi.ValidationError as error:
                    refused = error
                    break
                assert int(time.time() // 60) != minute, "a third ping went"
            else:
                pytest.fail("every try straddled a minute's end")
        finally:
            site.stop()
        assert "id" in refused.error_dict

    def test_the_web_page_says_so_without_a_server_error(self, app, receiver):
        hook = self._hook(receiver, None)
        client = app.test_client()
        statuses = []
        for _ in range(3):
            response = client.post(
                f"/webhooks/{hook}/test",
                data={"_csrf_token": _csrf_token(client)},
                environ_overrides={"REMOTE_ADDR": client_address()},
            )
            statuses.append(response.status_code)
        assert all(status < 500 for status in statuses), statuses
        assert receiver.count == 2


@pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_zero_pings_per_minute_means_no_limit(receiver):
    owner = factories.User()
    hook = helpers.call_action(
        "webhook_create",
        context={"user": owner["name"]},
        topic="*",
        address=f"{receiver.url}/unlimited",
    )
    assert [ping(hook, owner)[0] for _ in range(12)] == ["ok"] * 12


@pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 5)
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_pings_close_together_to_one_host_are_all_sent(receiver):
    """Beyond the contract: under the per-host rate a ping waits its turn
    (a fraction of a second here) instead of failing as "busy". Otherwise
    anyone pinging their own webhooks on a popular receiver host makes
    everyone else's test pings to that host fail."""
    owners = [factories.User() for _ in range(3)]
    hooks = [
        helpers.call_action(
            "webhook_create",
            context={"user": owner["name"]},
            topic="*",
            address=f"{receiver.url}/busy/{n}",
        )
        for n, owner in enumerate(owners)
    ]
    got = [ping(hook, owner) for hook, owner in zip(hooks, owners, strict=True)]
    assert [g[0] for g in got] == ["ok"] * 3, got
    assert receiver.count == 3


def _create_as(user: dict | None, address: str = "https://example.com/in"):
    return helpers.call_action(
        "webhook_create",
        context={"user": user["name"] if user else "", "ignore_auth": False},
        topic="*",
        address=address,
    )


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWebhooksPerUserAndAddress:
    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_user", 2)
    def test_per_user(self):
        user, other = factories.User(), factories.User()
        first = _create_as(user)
        _create_as(user, "https://example.org/a")
        with pytest.raises(tk.ValidationError) as error:
            _create_as(user, "https://example.org/b")
        (message,) = error.value.error_dict["owner"]
        assert "2 webhooks" in message and "Delete one" in message
        assert _create_as(other)  # the limit is per user
        context = {"user": user["name"], "ignore_auth": False}
        helpers.call_action("webhook_delete", context=context, id=first)
        assert _create_as(user, "https://example.org/b")

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_user", 2)
    def test_failed_create_over_the_limit_leaves_nothing(self):
        user = factories.User()
        _create_as(user)
        _create_as(user)
        with pytest.raises(tk.ValidationError):
            _create_as(user)
        assert model.Session.query(Webhook).count() == 2

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_user", 1)
    def test_sysadmins_are_exempt(self):
        sysadmin = factories.Sysadmin()
        for n in range(3):
            _create_as(sysadmin, f"https://example.com/{n}")
        assert model.Session.query(Webhook).count() == 3

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_user", 0)
    def test_zero_means_no_limit_per_user(self):
        user = factories.User()
        for n in range(5):
            _create_as(user, f"https://example.com/{n}")
        assert model.Session.query(Webhook).count() == 5

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 2)
    def test_per_address_for_anonymous_webhooks(self):
        _create_as(None)
        _create_as(None)
        with pytest.raises(tk.ValidationError) as error:
            _create_as(None)
        (message,) = error.value.error_dict["address"]
        assert "2 anonymous webhooks" in message and "Log in" in message
        # Another path, query or spelling of the same receiver host counts too.
        for spelling in ("https://EXAMPLE.com./other?x=1", "https://example.com:443/"):
            with pytest.raises(tk.ValidationError):
                _create_as(None, spelling)
        assert _create_as(None, "https://example.org/other")
        # Logged-in users are counted per user, not per address.
        assert _create_as(factories.User())

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_zero_means_no_limit_per_address(self):
        for _ in range(4):
            _create_as(None)
        assert model.Session.query(Webhook).count() == 4
