"""Receivers consent before CKAN sends (CloudEvents abuse protection).

Real receivers on 127.0.0.1 answer the ``OPTIONS`` handshake (or refuse,
ignore it, hang, or consent later by calling the callback URL), and the
delivery job is run for real: nothing is POSTed to a receiver that has not
consented, its deliveries wait, and they go once it does.
"""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import urlsplit

import ckan.model as model
import ckanapi
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from sqlalchemy import text
from standardwebhooks import Webhook as StandardWebhook

from ckanext.webhooks.delivery import deliver_pending, dispatch
from ckanext.webhooks.model import Webhook
from ckanext.webhooks.vocabulary import UNVERIFIED_REASON
from tests.support.receivers.recording import Receiver, Reply

ANONYMOUS = pytest.mark.ckan_config("ckanext.webhooks.verification", "anonymous")
ALL = pytest.mark.ckan_config("ckanext.webhooks.verification", "all")
SITE_ORIGIN = "test.ckan.net"  # the host of test.ini's ckan.site_url
# Sends on demand are counted per caller for a minute, across tests: only the
# test of that limit counts them, with a caller of its own.
NO_SEND_LIMIT = pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)


def anonymous(**data: Any) -> str:
    return helpers.call_action(
        "webhook_create", context={"user": "", "ignore_auth": False}, **data
    )


def show(webhook_id: str) -> dict[str, Any]:
    return helpers.call_action("webhook_show", id=webhook_id)


def delivery_states(webhook_id: str) -> list[tuple[str, int]]:
    rows = model.Session.execute(
        text(
            "SELECT status, attempts FROM webhook_delivery "
            "WHERE webhook_id = :id ORDER BY id"
        ),
        {"id": webhook_id},
    ).all()
    model.Session.commit()
    return [tuple(row) for row in rows]


def set_column(webhook_id: str, column: str, value: Any) -> None:
    model.Session.execute(
        text(f"UPDATE webhook SET {column} = :value WHERE id = :id"),
        {"value": value, "id": webhook_id},
    )
    model.Session.commit()


def callback_path(receiver: Receiver) -> str:
    url = receiver.handshakes[-1].headers["WebHook-Request-Callback"]
    return urlsplit(url).path


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWithoutVerification:
    def test_the_original_flow_sends_at_once_and_asks_nothing(self, receiver):
        hook = anonymous(topic="dataset/create", address=receiver.url)
        factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(1)
        assert receiver.handshakes == []
        shown = show(hook)
        assert shown["verification"] == "not required"
        assert shown["verified"] is False
        assert "Origin" not in receiver.received[0].headers


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestHandshake:
    @ANONYMOUS
    def test_a_consenting_receiver_is_asked_first_then_sent_to(self, receiver):
        receiver.consent(rate="120")
        hook = anonymous(topic="dataset/create", address=f"{receiver.url}/in")
        factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(1)
        (asked,) = receiver.handshakes
        assert asked.path == "/in"
        assert asked.headers["WebHook-Request-Origin"] == SITE_ORIGIN
        assert asked.headers["WebHook-Request-Rate"] == str(50 * 60)
        callback = asked.headers["WebHook-Request-Callback"]
        assert callback.startswith(f"http://{SITE_ORIGIN}/webhooks/consent/{hook}/")
        (delivered,) = receiver.received
        assert delivered.at > asked.at
        assert delivered.headers["Origin"] == SITE_ORIGIN  # as the spec asks
        shown = show(hook)
        assert shown["verified"] is True and shown["verification"] == "verified"
        assert shown["verified_at"].endswith("Z")
        assert shown["allowed_rate"] == 120
        assert shown["verification_error"] is None

    @ANONYMOUS
    def test_the_site_origin_itself_is_accepted(self, receiver):
        receiver.consent(origin=SITE_ORIGIN)
        hook = anonymous(topic="dataset/create", address=receiver.url)
        deliver_pending()
        assert show(hook)["verified"] is True

    @ANONYMOUS
    def test_a_webhook_with_an_owner_needs_no_consent_under_anonymous(self, receiver):
        user = factories.User()
        hook = helpers.call_action(
            "webhook_create",
            context={"user": user["name"], "ignore_auth": False},
            topic="dataset/create",
            address=receiver.url,
        )
        factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(1)
        assert receiver.handshakes == []
        assert show(hook)["verification"] == "not required"

    @ALL
    def test_all_asks_every_webhook(self, receiver):
        user = factories.User()
        hook = helpers.call_action(
            "webhook_create",
            context={"user": user["name"], "ignore_auth": False},
            topic="dataset/create",
            address=receiver.url,
        )
        factories.Dataset()
        deliver_pending()
        assert len(receiver.handshakes) == 1
        assert receiver.received == []  # 405 by default: no consent
        assert show(hook)["verification"] == "pending"


REFUSALS = [
    pytest.param(Reply(405, body=b""), "answered 405", id="no-OPTIONS"),
    pytest.param(Reply(403, body=b""), "answered 403", id="forbidden"),
    pytest.param(Reply(200, body=b""), "waiting for the receiver", id="ignores"),
    pytest.param(
        Reply(200, headers={"WebHook-Allowed-Origin": "elsewhere.example"}),
        "does not allow test.ckan.net",
        id="other-origin",
    ),
    pytest.param(
        Reply(
            200, headers={"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "x"}
        ),
        "WebHook-Allowed-Rate",
        id="unreadable-rate",
    ),
    pytest.param(Reply(200, delay=3.0), "timed out", id="times-out"),
]


@NO_SEND_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestNoConsentNoDelivery:
    @ANONYMOUS
    @pytest.mark.ckan_config("ckanext.webhooks.timeout", "1")
    @pytest.mark.parametrize(("reply", "reason"), REFUSALS)
    def test_refused_ignored_or_timed_out_sends_nothing_and_loses_nothing(
        self, receiver, reply, reason
    ):
        receiver.options_default = reply
        hook = anonymous(topic="dataset/create", address=receiver.url)
        factories.Dataset()
        deliver_pending()
        assert receiver.wait_for_handshakes(1)
        time.sleep(0.2)
        assert receiver.received == []  # not one POST
        shown = show(hook)
        assert shown["verified"] is False
        assert shown["verification"] == "pending"
        assert reason in shown["verification_error"]
        assert delivery_states(hook) == [("pending", 0)]  # waits, unattempted
        assert helpers.call_action("webhook_delivery_list", id=hook) == []

    @ANONYMOUS
    def test_held_deliveries_go_once_the_receiver_consents(self, receiver):
        hook = anonymous(topic="dataset/*", address=receiver.url)
        first = factories.Dataset()
        second = factories.Dataset()
        deliver_pending()
        assert receiver.received == []
        receiver.consent()
        result = helpers.call_action(
            "webhook_verify", context={"user": "", "ignore_auth": False}, id=hook
        )
        assert result["verified"] is True and result["error"] is None
        assert result["status_code"] == 200
        deliver_pending()
        assert receiver.wait_for(2)
        assert [b["entity"]["id"] for b in receiver.bodies()] == [
            first["id"],
            second["id"],
        ]
        assert delivery_states(hook) == [("succeeded", 1), ("succeeded", 1)]

    @ANONYMOUS
    def test_webhook_test_is_refused_until_consent(self, receiver):
        hook = anonymous(topic="dataset/create", address=receiver.url)
        with pytest.raises(tk.ValidationError) as raised:
            helpers.call_action(
                "webhook_test", context={"user": "", "ignore_auth": False}, id=hook
            )
        assert "not consented" in raised.value.error_dict["id"][0]
        assert receiver.received == [] and receiver.handshakes == []

    @ANONYMOUS
    @pytest.mark.ckan_config("ckanext.webhooks.timeout", "1")
    def test_a_hanging_handshake_holds_up_no_other_delivery(self, receiver):
        receiver.options_default = Reply(200, delay=3.0)
        anonymous(topic="dataset/create", address=receiver.url)
        owner = factories.User()
        with Receiver() as other:
            helpers.call_action(
                "webhook_create",
                context={"user": owner["name"], "ignore_auth": False},
                topic="dataset/create",
                address=other.url,
            )
            factories.Dataset()
            started = time.time()
            deliver_pending()
            assert other.wait_for(1)
            assert receiver.wait_for_handshakes(1)
            # Sent while the handshake was still waiting for its deadline.
            assert other.received[0].at < started + 1.0


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCallback:
    @ANONYMOUS
    def test_consent_by_callback_releases_the_deliveries(self, app, receiver):
        receiver.options_default = Reply(200, body=b"")
        hook = anonymous(topic="dataset/create", address=receiver.url)
        factories.Dataset()
        deliver_pending()
        assert receiver.received == []
        assert "waiting" in show(hook)["verification_error"]
        answer = app.post(
            callback_path(receiver), headers={"WebHook-Allowed-Rate": "30"}
        )
        assert answer.status_code == 200
        shown = show(hook)
        assert shown["verified"] is True and shown["allowed_rate"] == 30
        deliver_pending()
        assert receiver.wait_for(1)
        # Calling again changes nothing and is no error.
        assert app.get(callback_path(receiver)).status_code == 200

    @ANONYMOUS
    def test_anything_but_the_right_token_looks_missing(self, app, receiver):
        receiver.options_default = Reply(200, body=b"")
        hook = anonymous(topic="dataset/create", address=receiver.url)
        other = anonymous(topic="dataset/create", address=f"{receiver.url}/other")
        deliver_pending()
        assert receiver.wait_for_handshakes(2)
        by_path = {h.path: h for h in receiver.handshakes}
        token = by_path["/"].headers["WebHook-Request-Callback"].rsplit("/", 1)[1]
        missing = app.get("/webhooks/consent/no-such-webhook/x", status=404).body
        wrong = token[:-1] + ("B" if token.endswith("A") else "A")
        for path in (
            f"/webhooks/consent/{hook}/{wrong}",  # a wrong token
            f"/webhooks/consent/{other}/{token}",  # another webhook's
            f"/webhooks/consent/{hook}/",
        ):
            answer = app.get(path, expect_errors=True)
            assert answer.status_code == 404
            assert answer.body == missing or path.endswith("/")
        assert show(hook)["verified"] is False and show(other)["verified"] is False

    @ANONYMOUS
    def test_a_new_address_voids_the_callback_and_the_consent(self, app, receiver):
        receiver.consent()
        hook = anonymous(topic="dataset/create", address=receiver.url)
        deliver_pending()
        assert show(hook)["verified"] is True
        old_callback = callback_path(receiver)
        with Receiver() as moved:
            updated = helpers.call_action(
                "webhook_update",
                context={"user": "", "ignore_auth": False},
                id=hook,
                address=moved.url,
            )
            assert updated["verified"] is False
            assert updated["verification"] == "pending"
            assert updated["allowed_rate"] is None
            factories.Dataset()
            deliver_pending()
            assert moved.wait_for_handshakes(1)
            assert moved.received == []  # 405: the new receiver did not consent
            assert app.get(old_callback, expect_errors=True).status_code == 404
            assert show(hook)["verified"] is False


@NO_SEND_LIMIT
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestTimeToConsent:
    @ANONYMOUS
    @pytest.mark.ckan_config("ckanext.webhooks.verification_hours", "24")
    def test_no_consent_in_time_disables_it_and_verify_brings_it_back(self, receiver):
        hook = anonymous(topic="dataset/create", address=receiver.url)
        factories.Dataset()
        deliver_pending()
        assert show(hook)["verification"] == "pending"
        day_ago = datetime.datetime.utcnow() - datetime.timedelta(hours=25)
        set_column(hook, "verification_started", day_ago)
        assert dispatch()["expired"] == 1
        shown = show(hook)
        assert shown["active"] is False
        assert shown["disabled_reason"] == UNVERIFIED_REASON
        assert shown["verification"] == "failed"
        deliver_pending()  # its waiting delivery is dropped, never sent
        assert delivery_states(hook) == [("skipped", 1)]
        assert receiver.received == []
        receiver.consent()
        result = helpers.call_action(
            "webhook_verify", context={"user": "", "ignore_auth": False}, id=hook
        )
        assert result["verified"] is True
        shown = show(hook)
        assert shown["active"] is True and shown["disabled_reason"] is None

    @ANONYMOUS
    def test_handshakes_are_retried_on_a_schedule(self, receiver):
        hook = anonymous(topic="dataset/create", address=receiver.url)
        deliver_pending()
        deliver_pending()  # not due again yet
        assert len(receiver.handshakes) == 1
        due = model.Session.get(Webhook, hook).verification_due
        model.Session.commit()
        wait = due - datetime.datetime.utcnow()
        assert datetime.timedelta(seconds=50) < wait <= datetime.timedelta(minutes=1)
        assert dispatch()["handshakes"] == 0
        set_column(hook, "verification_due", datetime.datetime.utcnow())
        assert dispatch()["handshakes"] == 1
        receiver.consent()
        deliver_pending()
        assert len(receiver.handshakes) == 2
        shown = show(hook)
        assert shown["verified"] is True


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWhoMayVerify:
    @ALL
    @pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "2")
    def test_verify_now_counts_as_a_send_on_demand(self, receiver):
        owner = factories.User()
        context = {"user": owner["name"], "ignore_auth": False}
        hook = helpers.call_action(
            "webhook_create", context=dict(context), topic="*", address=receiver.url
        )
        for _ in range(2):
            helpers.call_action("webhook_verify", context=dict(context), id=hook)
        with pytest.raises(tk.ValidationError):
            helpers.call_action("webhook_verify", context=dict(context), id=hook)
        assert len(receiver.handshakes) == 2

    @ALL
    def test_a_stranger_cannot_verify_or_renew_anothers_webhook(self, receiver):
        owner, stranger = factories.User(), factories.User()
        hook = helpers.call_action(
            "webhook_create",
            context={"user": owner["name"], "ignore_auth": False},
            topic="dataset/create",
            address=receiver.url,
        )
        for action in ("webhook_verify", "webhook_renew"):
            for who in (stranger["name"], ""):
                with pytest.raises(tk.ObjectNotFound) as raised:
                    helpers.call_action(
                        action, context={"user": who, "ignore_auth": False}, id=hook
                    )
                assert str(raised.value) == "Webhook not found"
        assert receiver.handshakes == []

    @ANONYMOUS
    @NO_SEND_LIMIT
    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "sysadmin")
    def test_a_receiver_consents_whatever_minimum_auth_says(self, app, receiver):
        receiver.options_default = Reply(200, body=b"")
        admin = factories.Sysadmin()
        hook = helpers.call_action(
            "webhook_create",
            context={"user": admin["name"], "ignore_auth": False},
            topic="dataset/create",
            address=receiver.url,
        )
        helpers.call_action("webhook_update", id=hook, active=True)
        set_column(hook, "owner_id", None)  # anonymous, so it needs consent
        helpers.call_action("webhook_verify", id=hook)
        assert app.get(callback_path(receiver)).status_code == 200
        assert show(hook)["verified"] is True


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.live_config(
    **{
        "ckanext.webhooks.verification": "anonymous",
        "ckanext.webhooks.anonymous_lease_days": "30",
        "ckanext.webhooks.max_tests_per_minute": "0",
    }
)
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_the_whole_flow_through_ckanapi_against_a_live_site(live_site, receiver):
    """Anonymous creation with ckanapi, the handshake made by a stock worker,
    consent by callback to the live site, then the held delivery, signed."""
    admin = factories.Sysadmin()
    token = factories.APIToken(user=admin["name"])["token"]
    ckan = ckanapi.RemoteCKAN(live_site.url, apikey=token)
    anonymous = ckanapi.RemoteCKAN(live_site.url)
    origin = urlsplit(live_site.url).netloc

    receiver.consent_by_callback(rate="600")
    hook = anonymous.action.webhook_create(
        topic="dataset/create", address=f"{receiver.url}/cb"
    )
    shown = anonymous.action.webhook_show(id=hook)
    assert shown["verification"] == "pending" and shown["expires"]
    with Receiver() as refusing:  # answers OPTIONS with 405: no consent
        other = anonymous.action.webhook_create(
            topic="dataset/create", address=refusing.url
        )
        dataset = ckan.action.package_create(name="rivers", title="Rivers")
        live_site.run_worker()  # the handshakes; nothing may be POSTed yet
        assert receiver.wait_for_callbacks(1, timeout=30)
        assert receiver.callbacks == [200]
        asked = receiver.handshakes[0].headers
        assert asked["WebHook-Request-Origin"] == origin
        assert asked["WebHook-Request-Callback"].startswith(
            f"{live_site.url}/webhooks/consent/{hook}/"
        )
        assert refusing.received == []
        shown = anonymous.action.webhook_show(id=hook)
        assert shown["verified"] is True and shown["allowed_rate"] == 600
        # Consent queued a job (the same burst may have run it already): the
        # held delivery goes, after the handshake.
        live_site.run_worker()
        assert receiver.wait_for(1, timeout=30)
        assert receiver.received[0].at > receiver.handshakes[0].at
        got = receiver.received[0]
        assert got.headers["Origin"] == origin
        payload = StandardWebhook(shown["secret"]).verify(got.body, got.headers)
        assert payload["entity"]["id"] == dataset["id"]

        refused = anonymous.action.webhook_verify(id=other)
        assert refused["verified"] is False
        assert "answered 405" in refused["error"]
        assert refusing.received == []
        with pytest.raises(ckanapi.ValidationError) as raised:
            anonymous.action.webhook_test(id=other)
        assert "id" in raised.value.error_dict
    renewed = anonymous.action.webhook_renew(id=hook)
    assert renewed["expires"] >= shown["expires"]
    with pytest.raises(ckanapi.NotFound):
        anonymous.action.webhook_consent(id=hook, token="guess")


def _readme_receiver(marker: str) -> dict[str, Any]:
    """The README's receiver snippet holding ``marker``, run as written
    (subscribed to this test site), without its last line (which serves)."""
    from docutils import nodes

    from tests.test_docs import README, doctree

    blocks = [node.astext() for node in doctree(README).findall(nodes.literal_block)]
    (code,) = [block for block in blocks if marker in block]
    code = code.replace('"data.example.org"', f'"{SITE_ORIGIN}"')
    if code.rstrip().endswith(".serve_forever()"):
        code = code.rstrip().rsplit("\n", 1)[0]
    namespace: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(code, "README.rst", "exec"), namespace)
    return namespace


@pytest.fixture
def readme_receivers():
    """The README's two receivers, served on 127.0.0.1: their addresses."""
    import threading
    from http.server import HTTPServer

    from werkzeug.serving import make_server

    plain = HTTPServer(("127.0.0.1", 0), _readme_receiver("do_OPTIONS")["Receiver"])
    flask = make_server("127.0.0.1", 0, _readme_receiver("@app.route")["app"])
    servers = [plain, flask]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        "plain": f"http://127.0.0.1:{plain.server_address[1]}/",
        "flask": f"http://127.0.0.1:{flask.server_port}/ckan-events",
    }
    for server in servers:
        server.shutdown()
        server.server_close()


@NO_SEND_LIMIT
@ANONYMOUS
@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.parametrize("kind", ["plain", "flask"])
def test_the_readme_receivers_consent_and_receive(readme_receivers, kind):
    hook = anonymous(topic="dataset/create", address=readme_receivers[kind])
    result = helpers.call_action("webhook_verify", id=hook)
    assert result["verified"] is True and result["allowed_rate"] == 120
    factories.Dataset()
    deliver_pending()
    (entry,) = helpers.call_action("webhook_delivery_list", id=hook)
    assert entry["status_code"] == 204 and entry["outcome"] == "success"


@NO_SEND_LIMIT
@ANONYMOUS
@pytest.mark.ckan_config("ckan.site_url", "http://someone-else.example")
@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.parametrize("kind", ["plain", "flask"])
def test_the_readme_receivers_refuse_another_site(readme_receivers, kind):
    hook = anonymous(topic="dataset/create", address=readme_receivers[kind])
    result = helpers.call_action("webhook_verify", id=hook)
    assert result["verified"] is False and result["status_code"] == 403
