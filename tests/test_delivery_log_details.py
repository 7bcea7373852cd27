"""The delivery log as a debugging tool (issue 20): the request as sent, the
answer's headers, plain words, the next retry, grouping by event, paging and
the outcome filter."""

from __future__ import annotations

import dataclasses
import json

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks import config as cfg
from ckanext.webhooks.delivery import exchange
from ckanext.webhooks.delivery.loop import Deliverer
from ckanext.webhooks.http import Outcome, Transport
from tests.support.receivers.recording import Reply


class _AsIfPublic(Transport):
    """Loopback treated as public, so that answers are kept as a public
    receiver's would be (public receivers cannot be reached from here)."""

    async def _target(self, url):
        return dataclasses.replace(await super()._target(url), exempt=False)


def deliver_as_if_public() -> None:
    transport = _AsIfPublic(
        cfg.address_policy(),
        timeout=cfg.timeout(),
        max_response_bytes=cfg.max_response_bytes(),
    )
    deliverer = Deliverer(transport)
    try:
        deliverer.run()
    finally:
        deliverer.close()


def subscribe(receiver, topic="dataset/create"):
    return helpers.call_action(
        "webhook_create", topic=topic, address=receiver.url + "/hook"
    )


def log(hook_id, **params):
    return helpers.call_action("webhook_delivery_list", id=hook_id, **params)


def test_request_headers_keep_no_signature_nor_headers_we_did_not_write():
    kept = json.loads(
        exchange.logged_request_headers(
            {
                "Content-Type": "application/json",
                "webhook-id": "evt_1",
                "webhook-signature": "v1,c2VjcmV0",
                "Authorization": "Bearer owner-credential",
            }
        )
    )
    assert kept == [
        ["Content-Type", "application/json"],
        ["webhook-id", "evt_1"],
        ["webhook-signature", exchange.WITHHELD],
        ["Authorization", exchange.WITHHELD],
    ]


def test_response_headers_are_capped_whole_and_withheld_with_the_body():
    answer = Outcome(status=200, fields={b"a": b"x" * 10, b"b": b"y" * 10})
    assert json.loads(exchange.logged_response_headers(answer, 20)) == [["a", "x" * 10]]
    assert json.loads(exchange.logged_response_headers(answer, 100)) == [
        ["a", "x" * 10],
        ["b", "y" * 10],
    ]
    answer.body_withheld = True
    assert exchange.logged_response_headers(answer, 100) is None
    assert exchange.logged_response_headers(Outcome(error="timed out"), 100) is None


@pytest.mark.parametrize(
    ("outcome", "status", "error", "attempt", "words"),
    [
        ("success", 200, None, 1, "delivered: the receiver answered 200"),
        (
            "retry scheduled",
            None,
            "connection failed: Connection refused",
            1,
            "no response: connection refused; will retry",
        ),
        (
            "given up",
            500,
            None,
            8,
            "the receiver answered 500; given up after 8 attempts",
        ),
        ("gone", 410, None, 1, "the receiver answered 410 (Gone): the webhook is"),
    ],
)
def test_outcomes_in_plain_words(outcome, status, error, attempt, words):
    assert exchange.describe_outcome(outcome, status, error, attempt).startswith(words)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDeliveryLogDetails:
    def test_an_attempt_shows_the_request_as_sent_and_the_answer(self, receiver):
        hook_id = subscribe(receiver)
        receiver.script.append(
            Reply(500, headers={"X-Trace": "abc123"}, body=b"database on fire")
        )
        factories.Dataset()
        deliver_as_if_public()
        (entry,) = log(hook_id)
        sent = receiver.received[0]
        headers = dict(entry["request"]["headers"])
        assert headers["webhook-id"] == sent.headers["webhook-id"]
        assert headers["webhook-signature"] == exchange.WITHHELD
        secret = helpers.call_action("webhook_show", id=hook_id)["secret"]
        assert secret not in json.dumps(entry)
        assert sent.headers["webhook-signature"] not in json.dumps(entry)
        assert json.loads(entry["request"]["body"]) == sent.json
        assert ["x-trace", "abc123"] in entry["response_headers"]
        assert entry["response"] == "database on fire"
        assert entry["outcome_text"] == "the receiver answered 500; will retry"
        assert entry["next_attempt_at"].endswith("Z")

    @pytest.mark.ckan_config("ckanext.webhooks.max_logged_request_bytes", 10)
    def test_the_request_body_is_capped(self, receiver):
        hook_id = subscribe(receiver)
        factories.Dataset()
        deliver_as_if_public()
        (entry,) = log(hook_id)
        assert entry["request"]["body"] == receiver.received[0].body[:10].decode()

    def test_a_loopback_receivers_answer_is_withheld_headers_too(
        self, receiver, run_jobs
    ):
        hook_id = subscribe(receiver)
        receiver.script.append(Reply(500, headers={"X-Trace": "abc123"}))
        factories.Dataset()
        run_jobs()
        (entry,) = log(hook_id)
        assert entry["response"] is None
        assert entry["response_headers"] is None
        assert entry["request"]["headers"]  # what we sent is ours to show

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "0 0")
    def test_refused_and_given_up_in_plain_words(self, receiver, run_jobs):
        hook_id = subscribe(receiver)
        receiver.stop()
        factories.Dataset()
        run_jobs()  # retried at once, twice, then given up
        assert [entry["outcome_text"] for entry in log(hook_id)] == [
            "no response: connection refused; given up after 3 attempts",
            "no response: connection refused; will retry",
            "no response: connection refused; will retry",
        ]

    def test_grouped_by_event_paged_and_filtered_by_outcome(self, receiver):
        hook_id = subscribe(receiver, topic="dataset/*")
        receiver.script += [Reply(500)]
        first = factories.Dataset()
        deliver_as_if_public()
        helpers.call_action("webhook_redeliver", id=log(hook_id)[0]["id"])
        deliver_as_if_public()  # the first event: 500, then 200
        for _ in range(3):
            helpers.call_action("webhook_test", id=hook_id)
        events = log(hook_id, by_event=True)
        assert [e["topic"] for e in events] == ["webhook/ping"] * 3 + ["dataset/create"]
        oldest = events[-1]
        assert [a["status_code"] for a in oldest["attempts"]] == [200, 500]
        assert oldest["status"] == "succeeded"
        assert (
            json.loads(oldest["attempts"][0]["request"]["body"])["entity"]["id"]
            == (first["id"])
        )
        # Paging counts events, not attempts: the fourth event is on page 2.
        assert log(hook_id, by_event=True, limit=3, offset=3) == [oldest]
        assert log(hook_id, by_event=True, outcome="failed") == []
        receiver.script += [Reply(503)]
        factories.Dataset()
        deliver_as_if_public()
        (failing,) = log(hook_id, by_event=True, outcome="retry scheduled")
        assert failing["status"] == "pending"
        assert failing["next_attempt_at"] is not None

    def test_unknown_outcome_is_refused_by_name(self, receiver):
        hook_id = subscribe(receiver)
        with pytest.raises(helpers.logic.ValidationError) as error:
            log(hook_id, outcome="exploded")
        assert "outcome" in error.value.error_dict


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestSubscriptionsThatCanNeverFire:
    @pytest.mark.parametrize(
        ("topic", "filters"),
        [
            ("group/update", {"dataset": True}),
            ("group/*", {"organization": True}),
            ("organization/delete", {"dataset": True}),
        ],
    )
    def test_are_refused_with_a_reason(self, topic, filters):
        org = factories.Organization()
        dataset = factories.Dataset(owner_org=org["id"])
        data = {"dataset": dataset["id"], "organization": org["id"]}
        with pytest.raises(helpers.logic.ValidationError) as error:
            helpers.call_action(
                "webhook_create",
                topic=topic,
                address="http://127.0.0.1:9/x",
                **{key: data[key] for key in filters},
            )
        assert "concern no" in error.value.error_dict["topic"][0]

    def test_an_update_that_would_never_fire_changes_nothing(self):
        dataset = factories.Dataset()
        hook_id = helpers.call_action(
            "webhook_create",
            topic="dataset/update",
            address="http://127.0.0.1:9/x",
            dataset=dataset["id"],
        )
        with pytest.raises(helpers.logic.ValidationError):
            helpers.call_action("webhook_update", id=hook_id, topic="group/update")
        assert helpers.call_action("webhook_show", id=hook_id)["topic"] == (
            "dataset/update"
        )
        org = factories.Organization()
        helpers.call_action(
            "webhook_update",
            id=hook_id,
            topic="organization/update",
            dataset="",
            organization=org["id"],
        )
