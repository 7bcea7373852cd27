"""Signed deliveries through the job queue, checked at a real receiver."""

import json

import pytest
from ckan.tests import factories, helpers
from standardwebhooks import Webhook as StandardWebhook

import ckanext.webhooks
from ckanext.webhooks import delivery


def subscribe(receiver, topic="*", path="/hook", **filters):
    hook_id = helpers.call_action(
        "webhook_create", topic=topic, address=receiver.url + path, **filters
    )
    return helpers.call_action("webhook_show", id=hook_id)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPayloadAndSignature:
    def test_dataset_update(self, receiver, run_jobs):
        dataset = factories.Dataset()
        hook = subscribe(receiver, topic="dataset/update")
        helpers.call_action("package_patch", id=dataset["id"], title="Renamed")
        run_jobs()
        assert receiver.wait_for(1)
        got = receiver.received[0]
        payload = StandardWebhook(hook["secret"]).verify(got.body, got.headers)
        assert payload["topic"] == payload["type"] == "dataset/update"
        assert payload["id"].startswith("evt_")
        assert payload["webhook_id"] == hook["id"]
        assert payload["ckan"] == "http://test.ckan.net"
        assert payload["timestamp"].endswith("Z")
        assert isinstance(payload["sequence"], int)
        assert payload["entity_type"] == "dataset"
        assert payload["entity"] == helpers.call_action(
            "package_show", context={"user": "", "ignore_auth": False}, id=dataset["id"]
        )
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"] == (
            f"ckanext-webhooks/{ckanext.webhooks.__version__}"
        )
        assert got.headers["webhook-id"] == payload["id"]
        assert got.headers["webhook-signature"].startswith("v1,")

    def test_a_wrong_secret_does_not_verify(self, receiver, run_jobs):
        from standardwebhooks.webhooks import WebhookVerificationError

        subscribe(receiver, topic="dataset/create")
        factories.Dataset()
        run_jobs()
        assert receiver.wait_for(1)
        got = receiver.received[0]
        other = helpers.call_action(
            "webhook_show",
            id=helpers.call_action(
                "webhook_create", topic="dataset/create", address=receiver.url
            ),
        )
        with pytest.raises(WebhookVerificationError):
            StandardWebhook(other["secret"]).verify(got.body, got.headers)

    def test_resource_event_carries_the_resource(self, receiver, run_jobs):
        dataset = factories.Dataset()
        subscribe(receiver, topic="resource/create")
        resource = factories.Resource(package_id=dataset["id"], name="data.csv")
        run_jobs()
        assert receiver.wait_for(1)
        payload = receiver.bodies()[0]
        assert payload["entity_type"] == "resource"
        assert payload["entity"]["id"] == resource["id"]
        assert payload["entity"]["name"] == "data.csv"
        assert payload["entity"]["package_id"] == dataset["id"]

    def test_delete_carries_id_and_name(self, receiver, run_jobs):
        dataset = factories.Dataset()
        subscribe(receiver, topic="dataset/delete")
        helpers.call_action("package_delete", id=dataset["id"])
        run_jobs()
        assert receiver.wait_for(1)
        entity = receiver.bodies()[0]["entity"]
        assert entity["id"] == dataset["id"]
        assert entity["name"] == dataset["name"]
        assert entity["state"] == "deleted"

    def test_events_carry_increasing_sequence(self, receiver, run_jobs):
        dataset = factories.Dataset()
        subscribe(receiver, topic="dataset/update")
        for n in range(3):
            helpers.call_action("package_patch", id=dataset["id"], title=f"v{n}")
        run_jobs()
        assert receiver.wait_for(3)
        payloads = sorted(receiver.bodies(), key=lambda p: p["sequence"])
        assert [p["entity"]["title"] for p in payloads][-1] == "v2"
        assert [p["sequence"] for p in payloads] == [1, 2, 3]  # the webhook's


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestOneJobManyReceivers:
    @pytest.mark.ckan_config("ckanext.webhooks.concurrency", "20")
    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_one_job_delivers_to_every_webhook_concurrently(self, receiver):
        from tests.support.receivers.recording import Reply

        hooks = [subscribe(receiver, path=f"/h{n}") for n in range(40)]
        receiver.default = Reply(200, delay=0.2)
        factories.Dataset()
        stats = delivery.deliver_pending()  # exactly what one RQ job runs
        assert stats["succeeded"] == len(hooks)
        assert {r.path for r in receiver.received} == {f"/h{n}" for n in range(40)}

    def test_non_2xx_is_a_recorded_failure(self, receiver, run_jobs):
        from tests.support.receivers.recording import Reply

        hook = subscribe(receiver)
        receiver.script.append(Reply(500, body=b"database on fire"))
        factories.Dataset()
        run_jobs()
        log = helpers.call_action("webhook_delivery_list", id=hook["id"])
        assert log[0]["status_code"] == 500
        assert log[0]["outcome"] == "retry scheduled"
        # 127.0.0.1 is allowed only by allowed_hosts: its answer is not kept.
        assert log[0]["response"] is None
        assert log[0]["latency_ms"] >= 0

    def test_unreachable_receiver_is_a_recorded_failure(self, receiver, run_jobs):
        hook = subscribe(receiver)
        receiver.stop()
        factories.Dataset()
        run_jobs()
        log = helpers.call_action("webhook_delivery_list", id=hook["id"])
        assert log[0]["status_code"] is None
        assert "connection" in log[0]["error"]


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_dataset_create_is_delivered_and_signed(receiver, run_jobs):
    hook_id = helpers.call_action(
        "webhook_create", topic="dataset/create", address=receiver.url + "/hook"
    )
    hook = helpers.call_action("webhook_show", id=hook_id)
    dataset = factories.Dataset()
    run_jobs()
    assert receiver.wait_for(1, 5)
    got = receiver.received[0]
    payload = StandardWebhook(hook["secret"]).verify(got.body, got.headers)
    assert payload["topic"] == "dataset/create"
    assert payload["entity"]["id"] == dataset["id"]
    assert payload["webhook_id"] == hook_id


def _unspliced(body):
    """The body as ``json.dumps`` writes the payload it holds."""
    return json.dumps(json.loads(body), separators=(",", ":")).encode()


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestSplicedBodies:
    """One serialisation per (event, view), each webhook id spliced into it."""

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_bodies_are_the_unspliced_json_and_verify(self, receiver, run_jobs):
        hooks = {
            hook["id"]: hook
            for hook in (subscribe(receiver, path=f"/h{n}") for n in range(3))
        }
        factories.Dataset(title='Données \u2603 "quoted" \\ back', notes="x\ny")
        run_jobs()
        assert receiver.wait_for(3)
        entities = []
        for got in receiver.received:
            assert got.body == _unspliced(got.body)
            webhook_id = json.loads(got.body)["webhook_id"]
            payload = StandardWebhook(hooks[webhook_id]["secret"]).verify(
                got.body, got.headers
            )
            entities.append(payload["entity"])
        assert {json.loads(r.body)["webhook_id"] for r in receiver.received} == set(
            hooks
        )
        assert entities[0]["title"] == 'Données \u2603 "quoted" \\ back'
        assert entities[0] == entities[1] == entities[2]

    def test_spliced_body_equals_the_rendered_one(self):
        from ckanext.webhooks.delivery.payload import Template, render, render_spliced
        from ckanext.webhooks.model import Webhook, WebhookEvent, make_secret, utcnow

        event = WebhookEvent(
            id="evt_1",
            topic="dataset/update",
            entity_type="dataset",
            entity_id="d",
            created=utcnow(),
            sequence=7,
        )
        entity = {"title": "\u00e9\u2603\U0001f600", "n": [1, 2.5, None, True]}
        template = Template.of(event, entity)
        for hook_id, number in (("wh_a", 1), ('wh_\u00e9"\\', 12345), ("wh_p", None)):
            hook = Webhook(id=hook_id, topic="*", address="http://x/")
            hook.secret = make_secret()
            body, headers = render_spliced(event, hook, template, number)
            assert body == render(event, hook, entity, number)[0]
            assert json.loads(body)["webhook_id"] == hook_id
            assert json.loads(body)["sequence"] == number
            assert (
                StandardWebhook(hook.secret).verify(body, headers)["entity"] == entity
            )

    def test_an_entity_holding_the_mark_is_serialised_per_delivery(
        self, receiver, run_jobs
    ):
        from ckanext.webhooks.delivery import payload

        hook = subscribe(receiver, topic="custom/mark")
        data = {"text": payload._MARK, "also": payload._SEQUENCE_MARK}
        ckanext.webhooks.publish("custom/mark", data)
        import ckan.model as model

        model.Session.commit()
        run_jobs()
        assert receiver.wait_for(1)
        got = receiver.received[0]
        sent = StandardWebhook(hook["secret"]).verify(got.body, got.headers)
        assert sent["entity"] == data
        assert sent["webhook_id"] == hook["id"]

    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_a_payload_plugin_shapes_each_webhook_s_body(
        self, receiver, run_jobs, monkeypatch
    ):
        import ckan.plugins as p

        from ckanext.webhooks.interfaces import IWebhooks

        class PerWebhookPlugin(p.SingletonPlugin):
            p.implements(IWebhooks, inherit=True)

            def webhook_payload(self, payload, topic, webhook):
                payload["entity"]["for"] = webhook["address"]
                return payload

        original = p.PluginImplementations
        monkeypatch.setattr(
            p,
            "PluginImplementations",
            lambda interface: [
                *original(interface),
                *([PerWebhookPlugin()] if interface is IWebhooks else []),
            ],
        )
        hooks = [subscribe(receiver, path=f"/h{n}") for n in range(3)]
        factories.Dataset()
        run_jobs()
        assert receiver.wait_for(3)
        secrets = {hook["id"]: hook["secret"] for hook in hooks}
        for got in receiver.received:
            webhook_id = json.loads(got.body)["webhook_id"]
            sent = StandardWebhook(secrets[webhook_id]).verify(got.body, got.headers)
            assert sent["entity"]["for"] == receiver.url + got.path
