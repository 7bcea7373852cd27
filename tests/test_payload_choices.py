"""Payload choices and the site's signing keys (issue 17).

Thin payloads and CloudEvents, extra request headers, and ed25519 ``v1a``
signatures, checked at real receivers. Nothing here verifies with the
extension's own code: ``v1`` with ``standardwebhooks``, ``v1a`` with
libsodium (PyNaCl; the extension signs with ``cryptography``), CloudEvents
with the CNCF SDK.
"""

from __future__ import annotations

import base64
import json
import logging

import nacl.signing
import pytest
from ckan import model
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from cloudevents.v1.http import from_http
from nacl.exceptions import BadSignatureError
from sqlalchemy import text
from standardwebhooks import Webhook as StandardWebhook

from ckanext.webhooks.cli import webhooks as webhooks_cli
from ckanext.webhooks.model import Webhook, WebhookDelivery
from tests.helpers import Site, count
from tests.test_views import PASSWORD, Browser

SITE = "http://test.ckan.net"
THIN_KEYS = {"id", "name", "type", "dataset", "organization", "url"}


def _libsodium_key() -> tuple[nacl.signing.SigningKey, str]:
    """A key made by libsodium, written as ``whsk_`` (seed, then public key)."""
    key = nacl.signing.SigningKey.generate()
    written = base64.b64encode(bytes(key) + bytes(key.verify_key)).decode()
    return key, "whsk_" + written


FIRST, FIRST_CONFIG = _libsodium_key()
SECOND, _ = _libsodium_key()
# The bare 32-byte seed is accepted too.
SECOND_CONFIG = "whsk_" + base64.b64encode(bytes(SECOND)).decode()
TWO_KEYS = f"{FIRST_CONFIG} {SECOND_CONFIG}"


def subscribe(address: str, user: dict | None = None, **data) -> dict:
    context = {"user": user["name"] if user else "", "ignore_auth": False}
    data.setdefault("topic", "*")
    hook_id = helpers.call_action(
        "webhook_create", context=context, address=address, **data
    )
    return helpers.call_action("webhook_show", context=context, id=hook_id)


def signatures(received, version: str) -> list[bytes]:
    values = received.headers["webhook-signature"].split()
    return [
        base64.b64decode(value.partition(",")[2])
        for value in values
        if value.partition(",")[0] == version
    ]


def verifies_v1a(public: nacl.signing.VerifyKey, received) -> bool:
    """Verified as the spec says, by libsodium, with any of the v1a values."""
    signed = (
        f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}."
    ).encode() + received.body
    for signature in signatures(received, "v1a"):
        try:
            public.verify(signed, signature)
        except BadSignatureError:
            continue
        return True
    return False


def published_key(entry: dict) -> nacl.signing.VerifyKey:
    assert entry["public_key"].startswith("whpk_")
    return nacl.signing.VerifyKey(
        base64.b64decode(entry["public_key"].removeprefix("whpk_"))
    )


def first_of(receiver, path: str):
    matching = [r for r in receiver.received if r.path == path]
    assert matching, f"nothing arrived at {path}"
    return matching[0]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestThinPayloads:
    def test_thin_dataset_event_through_a_real_worker(self, receiver):
        org = factories.Organization()
        hook = subscribe(receiver.url + "/thin", topic="dataset/create", payload="thin")
        dataset = factories.Dataset(owner_org=org["id"])
        Site().work()  # the stock `ckan jobs worker --burst`, in its own process
        assert receiver.wait_for(1)
        got = first_of(receiver, "/thin")
        body = StandardWebhook(hook["secret"]).verify(got.body, got.headers)
        assert body["topic"] == "dataset/create"
        assert body["webhook_id"] == hook["id"]
        assert body["entity_type"] == "dataset"
        assert body["entity"] == {
            "id": dataset["id"],
            "name": dataset["name"],
            "type": "dataset",
            "dataset": None,
            "organization": org["id"],
            "url": f"{SITE}/api/action/package_show?id={dataset['id']}",
        }
        assert got.headers["Content-Type"] == "application/json"

    def test_thin_resource_names_its_dataset(self, receiver, run_jobs):
        dataset = factories.Dataset()
        subscribe(receiver.url + "/thin", topic="resource/create", payload="thin")
        resource = factories.Resource(package_id=dataset["id"], name="data.csv")
        run_jobs()
        assert receiver.wait_for(1)
        entity = first_of(receiver, "/thin").json["entity"]
        assert entity["id"] == resource["id"]
        assert entity["name"] == "data.csv"
        assert entity["type"] == "resource"
        assert entity["dataset"] == dataset["id"]
        assert entity["url"] == (f"{SITE}/api/action/resource_show?id={resource['id']}")

    def test_thin_goes_only_to_those_who_may_see_the_entity(self, receiver, run_jobs):
        member, stranger = factories.User(), factories.User()
        org = factories.Organization(
            users=[{"name": member["name"], "capacity": "editor"}]
        )
        subscribe(receiver.url + "/member", member, payload="thin")
        subscribe(receiver.url + "/stranger", stranger, payload="thin")
        private = factories.Dataset(owner_org=org["id"], private=True)
        run_jobs()

        got = [r.json for r in receiver.received if r.path == "/member"]
        assert (
            "dataset/create",
            private["id"],
        ) in {(b["topic"], b["entity"]["id"]) for b in got}
        assert all(
            set(b["entity"]) == THIN_KEYS for b in got if b["entity_type"] == "dataset"
        )
        stranger_got = [r for r in receiver.received if r.path == "/stranger"]
        assert not any(private["id"] in r.body.decode() for r in stranger_got)
        statuses = {d.status for d in model.Session.query(WebhookDelivery)}
        assert "skipped" in statuses

    def test_each_shape_gets_its_own_body_from_one_event(self, receiver, run_jobs):
        owner = factories.User()
        shapes = {
            "/full": {},
            "/thin": {"payload": "thin"},
            "/ce": {"format": "cloudevents"},
            "/thin-ce": {"payload": "thin", "format": "cloudevents"},
            "/full-again": {},
        }
        hooks = {
            path: subscribe(receiver.url + path, owner, topic="dataset/create", **data)
            for path, data in shapes.items()
        }
        dataset = factories.Dataset(notes="a long description")
        run_jobs()
        assert receiver.wait_for(len(shapes))

        def entity(path):
            body = first_of(receiver, path).json
            return body["data"]["entity"] if "specversion" in body else body["entity"]

        for path, hook in hooks.items():
            got = first_of(receiver, path)
            StandardWebhook(hook["secret"]).verify(got.body, got.headers)
            body = got.json
            assert ("specversion" in body) == path.endswith("ce"), path
            thin = set(entity(path)) == THIN_KEYS
            assert thin == path.startswith("/thin"), path
        assert entity("/full")["notes"] == "a long description"
        assert entity("/full") == entity("/ce") == entity("/full-again")
        assert entity("/thin") == entity("/thin-ce")
        assert entity("/thin")["id"] == dataset["id"]

    def test_thin_delete_still_names_what_was_deleted(self, receiver, run_jobs):
        dataset = factories.Dataset()
        subscribe(receiver.url + "/thin", topic="dataset/delete", payload="thin")
        helpers.call_action("package_delete", id=dataset["id"])
        run_jobs()
        assert receiver.wait_for(1)
        entity = first_of(receiver, "/thin").json["entity"]
        assert set(entity) == THIN_KEYS
        assert (entity["id"], entity["name"]) == (dataset["id"], dataset["name"])

    def test_pings_and_custom_events_keep_their_entity(self, receiver, run_jobs):
        sysadmin = factories.Sysadmin()
        hook = subscribe(receiver.url + "/thin", topic="custom/harvest", payload="thin")
        helpers.call_action(
            "webhook_event_publish",
            context={"user": sysadmin["name"]},
            topic="custom/harvest",
            data={"source": "x", "count": 3},
        )
        run_jobs()
        assert receiver.wait_for(1)
        assert first_of(receiver, "/thin").json["entity"] == {
            "source": "x",
            "count": 3,
        }
        assert helpers.call_action("webhook_test", id=hook["id"])["success"]
        pings = [r.json for r in receiver.received if r.json["topic"] == "webhook/ping"]
        assert pings[0]["entity"]["id"] == hook["id"]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCloudEvents:
    def test_parsed_by_the_sdk_and_signed_the_standard_way(self, receiver, run_jobs):
        hook = subscribe(
            receiver.url + "/ce", topic="dataset/update", format="cloudevents"
        )
        dataset = factories.Dataset()
        helpers.call_action("package_patch", id=dataset["id"], title="Renamed")
        run_jobs()
        assert receiver.wait_for(1)
        got = first_of(receiver, "/ce")
        assert got.headers["Content-Type"] == "application/cloudevents+json"
        # Still signed with the webhook's secret, as any delivery.
        StandardWebhook(hook["secret"]).verify(got.body, got.headers)

        event = from_http(got.headers, got.body)
        assert event["specversion"] == "1.0"
        assert event["id"] == got.headers["webhook-id"]
        assert event["id"].startswith("evt_")
        assert event["source"] == SITE
        assert event["type"] == "org.ckan.dataset.update"
        assert event["subject"] == f"dataset/{dataset['id']}"
        assert event["time"].endswith("Z")
        assert event["datacontenttype"] == "application/json"
        data = event.data
        assert data["topic"] == "dataset/update"
        assert data["webhook_id"] == hook["id"]
        assert isinstance(data["sequence"], int)
        assert data["entity_type"] == "dataset"
        assert data["entity"]["title"] == "Renamed"


def _no_site_keys(got) -> None:
    assert signatures(got, "v1a") == []


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestSiteSigningKeys:
    @pytest.mark.ckan_config("ckanext.webhooks.signing_keys", TWO_KEYS)
    def test_two_keys_sign_beside_the_hmac(self, receiver, run_jobs):
        hook = subscribe(receiver.url + "/hook", topic="dataset/create")
        factories.Dataset()
        run_jobs()
        assert receiver.wait_for(1)
        got = first_of(receiver, "/hook")
        # v1 is verified as before; the v1a values do not disturb it.
        StandardWebhook(hook["secret"]).verify(got.body, got.headers)
        assert len(signatures(got, "v1")) == 1
        assert len(signatures(got, "v1a")) == 2

        published = helpers.call_action("webhook_signing_keys")["keys"]
        assert [published_key(k) for k in published] == [
            FIRST.verify_key,
            SECOND.verify_key,
        ]
        for entry in published:
            assert verifies_v1a(published_key(entry), got)
        assert verifies_v1a(FIRST.verify_key, got)
        assert verifies_v1a(SECOND.verify_key, got)

    @pytest.mark.ckan_config("ckanext.webhooks.signing_keys", FIRST_CONFIG)
    def test_a_key_not_configured_does_not_verify(self, receiver, run_jobs):
        subscribe(receiver.url + "/hook", topic="dataset/create")
        factories.Dataset()
        run_jobs()
        assert receiver.wait_for(1)
        got = first_of(receiver, "/hook")
        assert verifies_v1a(FIRST.verify_key, got)
        assert not verifies_v1a(SECOND.verify_key, got)
        # Nor does the signature of another body.
        tampered = type(got)(got.path, got.headers, got.body + b" ", got.at)
        assert not verifies_v1a(FIRST.verify_key, tampered)

    @pytest.mark.ckan_config("ckanext.webhooks.signing_keys", TWO_KEYS)
    def test_cloudevents_and_pings_carry_v1a_too(self, receiver):
        hook = subscribe(receiver.url + "/ce", format="cloudevents")
        assert helpers.call_action("webhook_test", id=hook["id"])["success"]
        got = first_of(receiver, "/ce")
        assert from_http(got.headers, got.body)["type"] == "org.ckan.webhook.ping"
        assert verifies_v1a(FIRST.verify_key, got)
        assert verifies_v1a(SECOND.verify_key, got)

    def test_without_keys_nothing_is_published_or_signed(self, receiver):
        hook = subscribe(receiver.url + "/hook")
        assert helpers.call_action("webhook_signing_keys") == {"keys": []}
        assert helpers.call_action("webhook_test", id=hook["id"])["success"]
        _no_site_keys(first_of(receiver, "/hook"))

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "sysadmin")
    @pytest.mark.ckan_config("ckanext.webhooks.signing_keys", TWO_KEYS)
    def test_published_to_anyone_over_get(self, app):
        document = app.get("/.well-known/webhooks/keys.json")
        assert document.status_code == 200
        assert document.headers["Content-Type"].startswith("application/json")
        keys = json.loads(document.body)["keys"]
        assert [published_key(k) for k in keys] == [
            FIRST.verify_key,
            SECOND.verify_key,
        ]
        assert all(k["algorithm"] == "ed25519" for k in keys)
        assert len({k["id"] for k in keys}) == 2

        answer = app.get("/api/3/action/webhook_signing_keys")
        assert answer.status_code == 200
        assert json.loads(answer.body)["result"]["keys"] == keys
        # Never a secret key: not the whsk_ text, not the seed.
        for served in (document.body, answer.body):
            assert "whsk_" not in served
            for seed in (FIRST, SECOND):
                assert base64.b64encode(bytes(seed)).decode() not in served
        # The rest stays closed to anonymous callers.
        create = app.post(
            "/api/3/action/webhook_create",
            json={"topic": "*", "address": "http://127.0.0.1:9/x"},
        )
        assert create.status_code == 403

    def test_cli_creates_a_webhook_of_any_shape(self, cli):
        result = cli.invoke(
            webhooks_cli,
            [
                "create",
                "dataset/update",
                "http://127.0.0.1:9/hook",
                "--payload",
                "thin",
                "--format",
                "cloudevents",
                "--header",
                "Authorization: Bearer s3cr3t",
                "--header",
                "X-Tenant: 7",
            ],
        )
        assert result.exit_code == 0, result.output
        shown = helpers.call_action("webhook_show", id=result.output.strip())
        assert (shown["payload"], shown["format"]) == ("thin", "cloudevents")
        assert shown["headers"] == ["Authorization", "X-Tenant"]
        refused = cli.invoke(
            webhooks_cli,
            ["create", "*", "http://127.0.0.1:9/hook", "--header", "Host: x"],
        )
        assert refused.exit_code == 1 and "headers" in refused.output

    def test_the_action_takes_no_parameters(self):
        with pytest.raises(tk.ValidationError) as error:
            helpers.call_action("webhook_signing_keys", key="x")
        assert "key" in error.value.error_dict

    def test_keygen_output_is_usable_as_config(self, cli, receiver, run_jobs):
        result = cli.invoke(webhooks_cli, ["keygen"])
        assert result.exit_code == 0, result.output
        config_line, comment = result.output.strip().splitlines()
        option, equals, secret = config_line.partition(" = ")
        assert option == "ckanext.webhooks.signing_keys" and equals
        assert secret.startswith("whsk_")
        public = comment.rsplit(" ", 1)[1]
        assert public.startswith("whpk_")
        assert secret not in comment
        # A second run gives another key.
        assert cli.invoke(webhooks_cli, ["keygen"]).output != result.output

        with helpers.changed_config(option, secret):
            assert [
                k["public_key"]
                for k in helpers.call_action("webhook_signing_keys")["keys"]
            ] == [public]
            subscribe(receiver.url + "/hook", topic="dataset/create")
            factories.Dataset()
            run_jobs()
        assert receiver.wait_for(1)
        verify_key = nacl.signing.VerifyKey(
            base64.b64decode(public.removeprefix("whpk_"))
        )
        assert verifies_v1a(verify_key, first_of(receiver, "/hook"))

    @pytest.mark.parametrize(
        "entry",
        [
            "whsk_" + base64.b64encode(b"k" * 31).decode(),  # too short
            "whsk_" + "not*base64",
            "whpk_" + base64.b64encode(bytes(FIRST.verify_key)).decode(),
            # the public half does not match the seed
            "whsk_"
            + base64.b64encode(bytes(FIRST) + bytes(SECOND.verify_key)).decode(),
            "whsec_" + base64.b64encode(b"k" * 32).decode(),
        ],
        ids=["short", "not-base64", "public-key", "mismatched", "hmac-secret"],
    )
    def test_a_bad_key_stops_ckan_at_startup_without_printing_it(self, entry):
        site = Site(**{"ckanext.webhooks.signing_keys": f"{FIRST_CONFIG} {entry}"})
        result = site.ckan("webhooks", "list", check=False, timeout=60)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "entry 2 of ckanext.webhooks.signing_keys" in output
        assert entry.split("_", 1)[1] not in output
        assert FIRST_CONFIG.split("_", 1)[1] not in output


BAD_HEADERS = {
    "crlf-in-value": {"X-Token": "abc\r\nX-Injected: 1"},
    "lf-in-value": {"X-Token": "abc\nX-Injected: 1"},
    "nul-in-value": {"X-Token": "abc\x00"},
    "crlf-in-name": {"X-Token\r\nX-Injected": "1"},
    "space-in-name": {"X Token": "1"},
    "host": {"Host": "internal.example"},
    "content-type": {"Content-Type": "text/plain"},
    "content-length": {"content-length": "0"},
    "webhook-id": {"webhook-id": "evt_forged"},
    "webhook-signature": {"Webhook-Signature": "v1,forged"},
    "transfer-encoding": {"Transfer-Encoding": "chunked"},
    "empty-name": {"": "1"},
    "empty-value": {"X-Token": "  "},
    "not-a-string": {"X-Token": 5},
    "non-ascii": {"X-Token": "caf\u00e9"},
    "too-long": {"X-Token": "a" * 2049},
    "too-many": {f"X-H{i}": "v" for i in range(11)},
    "twice": {"X-Token": "1", "x-token": "2"},
    "a-list": ["Authorization: x"],
}


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCustomHeaders:
    SECRET = "Bearer s3cr3t-gateway-token"

    def test_sent_to_the_receiver_and_never_shown_or_logged(
        self, receiver, run_jobs, caplog
    ):
        caplog.set_level(logging.DEBUG)
        owner = factories.User()
        context = {"user": owner["name"], "ignore_auth": False}
        hook = subscribe(
            receiver.url + "/hook",
            owner,
            topic="dataset/create",
            headers={"Authorization": self.SECRET, "X-Tenant": "portal-7"},
        )
        factories.Dataset()
        run_jobs()
        assert receiver.wait_for(1)
        got = first_of(receiver, "/hook")
        assert got.headers["Authorization"] == self.SECRET
        assert got.headers["X-Tenant"] == "portal-7"
        StandardWebhook(hook["secret"]).verify(got.body, got.headers)

        assert hook["headers"] == ["Authorization", "X-Tenant"]
        listed = helpers.call_action("webhook_list", context=context)
        log = helpers.call_action(
            "webhook_delivery_list", context=context, id=hook["id"]
        )
        updated = helpers.call_action(
            "webhook_update", context=context, id=hook["id"], rate_limit=100
        )
        for shown in (hook, listed, log, updated):
            assert self.SECRET not in json.dumps(shown)
            assert "s3cr3t" not in json.dumps(shown)
        assert "s3cr3t" not in caplog.text
        # What the delivery log records of the request holds no header value.
        attempts = model.Session.execute(text("SELECT * FROM webhook_attempt")).all()
        assert attempts and "s3cr3t" not in repr(attempts)

    def test_not_in_ckans_api_debug_log(self, app, caplog, monkeypatch):
        # test.ini stops ckan.* records at the ckan logger: listen on it.
        api_log = logging.getLogger("ckan.views.api")
        monkeypatch.setattr(api_log, "handlers", [caplog.handler])
        caplog.set_level(logging.DEBUG, logger="ckan.views.api")
        for headers in (
            {"Authorization": self.SECRET},
            f"Authorization: {self.SECRET}",
        ):
            answer = app.post(
                "/api/3/action/webhook_create",
                json={
                    "topic": "*",
                    "address": "http://127.0.0.1:9/hook",
                    "headers": headers,
                },
            )
            assert answer.status_code == 200, answer.body
        # CKAN logged the request data, with the names but not the values.
        assert "Request data extracted" in caplog.text
        assert "Authorization" in caplog.text
        assert "s3cr3t" not in caplog.text

    def test_the_page_shows_the_names_only(self, app):
        user = factories.User(password=PASSWORD)
        browser = Browser(app).login(user)
        response = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": "dataset/update",
                "address": "http://127.0.0.1:9/hook",
                "payload": "thin",
                "format": "cloudevents",
                "headers": f"Authorization: {self.SECRET}\r\nX-Tenant: portal-7\r\n",
            },
        )
        assert "Webhook created." in response.body
        [hook] = helpers.call_action("webhook_list", {"user": user["name"]})
        assert hook["payload"] == "thin"
        assert hook["format"] == "cloudevents"
        assert hook["headers"] == ["Authorization", "X-Tenant"]
        page = browser.get(f"/webhooks/{hook['id']}").body
        assert "Authorization" in page and "X-Tenant" in page
        assert "s3cr3t" not in page and "portal-7" not in page
        assert "thin, cloudevents" in page
        stored = model.Session.get(Webhook, hook["id"])
        assert stored.custom_headers["Authorization"] == self.SECRET

    def test_the_form_offers_the_choices(self, app):
        browser = Browser(app).login(factories.User(password=PASSWORD))
        page = browser.get("/webhooks/new").body
        for field in ('name="payload"', 'name="format"', 'name="headers"'):
            assert field in page
        for choice in ('value="thin"', 'value="full"', 'value="cloudevents"'):
            assert choice in page

    def test_a_refused_form_does_not_echo_the_values(self, app):
        user = factories.User(password=PASSWORD)
        browser = Browser(app).login(user)
        body = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": "dataset/update",
                "address": "http://127.0.0.1:9/hook",
                "headers": f"Authorization: {self.SECRET}\nHost: elsewhere",
            },
        ).body
        assert "The form contains invalid entries" in body
        assert "Host is set by the sender itself" in body
        assert "s3cr3t" not in body
        assert "Authorization:" in body
        assert helpers.call_action("webhook_list", {"user": user["name"]}) == []

    @pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
    def test_bad_headers_are_refused_by_name(self, headers):
        with pytest.raises(tk.ValidationError) as error:
            helpers.call_action(
                "webhook_create",
                topic="*",
                address="http://127.0.0.1:9/hook",
                headers=headers,
            )
        assert list(error.value.error_dict) == ["headers"], error.value.error_dict
        message = json.dumps(error.value.error_dict)
        for value in headers.values() if isinstance(headers, dict) else []:
            if isinstance(value, str) and len(value.strip()) > 2:
                assert value not in message
        assert count("webhook") == 0

    def test_an_injected_line_never_reaches_the_wire(self, receiver):
        hook = subscribe(receiver.url + "/hook")
        with pytest.raises(tk.ValidationError):
            helpers.call_action(
                "webhook_update",
                id=hook["id"],
                headers={"X-Token": "a\r\nX-Injected: yes"},
            )
        assert helpers.call_action("webhook_test", id=hook["id"])["success"]
        got = first_of(receiver, "/hook")
        assert "X-Injected" not in got.headers and "X-Token" not in got.headers

    @pytest.mark.ckan_config("ckanext.webhooks.verification", "all")
    def test_the_consent_handshake_carries_them_too(self, receiver):
        receiver.consent()
        hook = subscribe(receiver.url + "/hook", headers={"X-Gateway-Key": "k-42"})
        assert helpers.call_action("webhook_verify", id=hook["id"])["verified"]
        assert receiver.handshakes[-1].headers["X-Gateway-Key"] == "k-42"

    def test_update_replaces_or_clears_them(self, receiver):
        hook = subscribe(receiver.url + "/hook", headers={"X-Old": "1"})
        helpers.call_action("webhook_update", id=hook["id"], headers={"X-New": "2"})
        assert helpers.call_action("webhook_show", id=hook["id"])["headers"] == [
            "X-New"
        ]
        helpers.call_action("webhook_test", id=hook["id"])
        got = receiver.received[-1]
        assert got.headers["X-New"] == "2" and "X-Old" not in got.headers
        helpers.call_action("webhook_update", id=hook["id"], headers={})
        assert helpers.call_action("webhook_show", id=hook["id"])["headers"] == []
        helpers.call_action("webhook_update", id=hook["id"], payload="thin")
        shown = helpers.call_action("webhook_show", id=hook["id"])
        assert (shown["payload"], shown["format"], shown["headers"]) == (
            "thin",
            "standard",
            [],
        )

    @pytest.mark.parametrize(
        "field, value", [("payload", "fat"), ("format", "xml"), ("payload", 3)]
    )
    def test_unknown_payload_or_format_is_refused(self, field, value):
        with pytest.raises(tk.ValidationError) as error:
            helpers.call_action(
                "webhook_create",
                topic="*",
                address="http://127.0.0.1:9/hook",
                **{field: value},
            )
        assert field in error.value.error_dict
        assert count("webhook") == 0
