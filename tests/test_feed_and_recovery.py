"""Catching up: the event feed (``webhook_event_list``) and ``webhook_recover``.

The feed shows each caller what deliveries would show them, decided when it
is read; its cursor survives new events and pruning. Recovery queues again,
for one webhook, what it missed, and nothing it already received.
"""

from __future__ import annotations

import datetime
from typing import Any

import ckan.model as model
import ckanapi
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.delivery import deliver_pending
from ckanext.webhooks.logic import action
from ckanext.webhooks.retention import prune


def as_(user: dict | None) -> dict[str, Any]:
    return {"user": user["name"] if user else "", "ignore_auth": False}


def feed(user: dict | None = None, **data: Any) -> dict[str, Any]:
    return helpers.call_action("webhook_event_list", context=as_(user), **data)


def everything(user: dict | None = None, **data: Any) -> list[dict[str, Any]]:
    """Every item, page by page, while ``more`` says there is more."""
    items = []
    while True:
        page = feed(user, **data)
        items += page["items"]
        if not page["more"]:
            return items
        data["since"] = page["next"]


def entity_ids(items: list[dict[str, Any]], topic: str | None = None) -> list[str]:
    return [i["entity"]["id"] for i in items if topic is None or i["topic"] == topic]


class Cast:
    def __init__(self) -> None:
        self.member = factories.User()
        self.stranger = factories.User()
        self.admin = factories.Sysadmin()
        self.org = factories.Organization(
            users=[{"name": self.member["name"], "capacity": "member"}]
        )
        self.public = factories.Dataset(owner_org=self.org["id"])
        self.private = factories.Dataset(owner_org=self.org["id"], private=True)


@pytest.fixture
def cast() -> Cast:
    return Cast()


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWhoSeesWhat:
    def test_each_caller_sees_what_they_may_read(self, cast):
        created = "dataset/create"
        both = [cast.public["id"], cast.private["id"]]
        assert entity_ids(everything(None), created) == [cast.public["id"]]
        assert entity_ids(everything(cast.stranger), created) == [cast.public["id"]]
        assert entity_ids(everything(cast.member), created) == both
        assert entity_ids(everything(cast.admin), created) == both

    def test_public_then_private_is_hidden_as_deliveries_are(self, cast):
        helpers.call_action("package_patch", id=cast.public["id"], private=True)
        for who in (None, cast.stranger):
            assert cast.public["id"] not in entity_ids(everything(who))
        assert cast.public["id"] in entity_ids(everything(cast.member))

    def test_items_are_delivery_bodies_without_the_webhooks_fields(
        self, receiver, cast
    ):
        helpers.call_action("webhook_create", topic="dataset/*", address=receiver.url)
        dataset = factories.Dataset(title="Tides")
        deliver_pending()
        assert receiver.wait_for(1)
        delivered = receiver.received[0]
        (item,) = [i for i in everything(None) if i["entity"]["id"] == dataset["id"]]
        assert item["id"] == delivered.headers["webhook-id"]  # push = pull
        body = delivered.json
        # What differs per webhook: its id, its number, where it stands with
        # the webhook's filters.
        del body["webhook_id"], body["sequence"], body["filter"]
        assert item == body


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPaging:
    def test_pages_follow_on_without_gaps_or_repeats_as_events_arrive(self):
        first = [factories.Dataset()["id"] for _ in range(3)]
        page = feed(None, limit=2, topic="dataset/create")
        assert entity_ids(page["items"]) == first[:2]
        later = [factories.Dataset()["id"] for _ in range(2)]
        rest = everything(None, since=page["next"], topic="dataset/create")
        assert entity_ids(rest) == first[2:] + later

    def test_a_cursor_survives_pruning(self):
        datasets = [factories.Dataset()["id"] for _ in range(3)]
        page = feed(None, limit=2, topic="dataset/create")
        model.Session.execute(
            text("UPDATE webhook_event SET created = created - interval '90 days'")
        )
        model.Session.commit()
        prune()
        later = factories.Dataset()["id"]
        rest = everything(None, since=page["next"], topic="dataset/create")
        assert entity_ids(rest) == [later]
        assert datasets  # the first three are gone with their events

    def test_since_a_time_or_an_event(self):
        before = factories.Dataset()
        moment = datetime.datetime.utcnow().isoformat() + "Z"
        after = factories.Dataset()
        assert entity_ids(everything(None, since=moment), "dataset/create") == [
            after["id"]
        ]
        (first_event,) = [
            i["id"] for i in everything(None) if i["entity"]["id"] == before["id"]
        ]
        assert entity_ids(everything(None, since=first_event), "dataset/create") == [
            after["id"]
        ]

    @pytest.mark.parametrize(
        "since", ["cur_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "evt_nope", "yesterday"]
    )
    def test_a_bad_since_is_a_clear_error(self, since):
        with pytest.raises(tk.ValidationError) as raised:
            feed(None, since=since)
        assert list(raised.value.error_dict) == ["since"]

    def test_a_tampered_cursor_is_refused_and_cursors_tell_nothing(self):
        factories.Dataset()
        cursor = feed(None, limit=1)["next"]
        assert feed(None, limit=1)["next"] != cursor  # sealed with a fresh nonce
        flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
        with pytest.raises(tk.ValidationError):
            feed(None, since=flipped)

    def test_hidden_events_are_passed_over_a_bounded_number_at_a_time(self, cast):
        for _ in range(12):
            factories.Dataset(owner_org=cast.org["id"], private=True)
        last = factories.Dataset()
        first = feed(None, limit=1, topic="dataset/create")
        assert entity_ids(first["items"]) == [cast.public["id"]]
        second = feed(None, limit=1, since=first["next"], topic="dataset/create")
        assert second["items"] == []  # ten private events looked at, none shown
        rest = everything(None, since=second["next"], topic="dataset/create")
        assert entity_ids(rest) == [last["id"]]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestFilters:
    def test_topic_wildcards_dataset_and_organization(self, cast):
        other = factories.Dataset()
        factories.Resource(package_id=other["id"])
        topics = {i["topic"] for i in everything(None, topic="dataset/*")}
        assert topics <= {"dataset/create", "dataset/update", "dataset/delete"}
        assert {i["topic"] for i in everything(None, topic="resource/create")} == {
            "resource/create"
        }
        by_dataset = everything(None, dataset=other["name"])
        assert {i["entity"].get("package_id", i["entity"]["id"]) for i in by_dataset}
        assert all(
            other["id"] in (i["entity"]["id"], i["entity"].get("package_id"))
            for i in by_dataset
        )
        by_org = everything(cast.admin, organization=cast.org["name"])
        assert set(entity_ids(by_org, "dataset/create")) == {
            cast.public["id"],
            cast.private["id"],
        }

    def test_unknown_filters_are_named(self, cast):
        with pytest.raises(tk.ValidationError) as raised:
            feed(None, dataset=cast.private["name"], topic="dataset/explode")
        assert set(raised.value.error_dict) == {"dataset", "topic"}

    @pytest.mark.ckan_config("ckanext.webhooks.feed_max_limit", "2")
    def test_a_page_is_never_bigger_than_the_site_allows(self):
        for _ in range(3):
            factories.Dataset()
        page = feed(None, limit=1000, topic="dataset/create")
        assert len(page["items"]) == 2 and page["more"] is True

    def test_it_works_over_get(self, app):
        factories.Dataset()
        answer = app.get("/api/3/action/webhook_event_list?limit=1&topic=dataset/*")
        assert answer.json["success"] is True
        assert len(answer.json["result"]["items"]) == 1

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "editor")
    def test_minimum_auth_gates_it(self):
        with pytest.raises(tk.NotAuthorized):
            feed(None)


def _pending_count() -> int:
    value = model.Session.execute(
        text("SELECT count(*) FROM webhook_delivery WHERE status = 'pending'")
    ).scalar()
    model.Session.commit()
    return value


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestRecovery:
    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "0 0")
    @pytest.mark.ckan_config("ckanext.webhooks.max_failures", "1")
    @pytest.mark.ckan_config("ckanext.webhooks.concurrency", "1")
    @pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "0")
    def test_a_receiver_down_past_every_retry_gets_all_it_missed_once_in_order(
        self, receiver
    ):
        start = datetime.datetime.utcnow().isoformat() + "Z"
        hook = helpers.call_action(
            "webhook_create", topic="dataset/create", address=receiver.url
        )
        delivered_before = factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(1)
        receiver.default.status = 503  # down
        given_up = factories.Dataset()
        deliver_pending()  # three attempts, given up: the webhook is disabled
        shown = helpers.call_action("webhook_show", id=hook)
        assert shown["active"] is False
        missed = [factories.Dataset() for _ in range(3)]  # while disabled
        receiver.default.status = 200  # up again
        with pytest.raises(tk.ValidationError):  # disabled: enable it first
            helpers.call_action("webhook_recover", id=hook, since=start)
        helpers.call_action("webhook_update", id=hook, active=True)
        result = helpers.call_action("webhook_recover", id=hook, since=start)
        assert result == {"queued": 4, "complete": True, "next": None}
        deliver_pending()
        ok = [r for r in receiver.received if r.json and r.headers][4:]
        expected = [given_up["id"]] + [d["id"] for d in missed]
        assert [r.json["entity"]["id"] for r in ok] == expected
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(set(ids[4:])) == 4 and ids[0] not in ids[4:]  # none twice
        assert delivered_before["id"] not in [r.json["entity"]["id"] for r in ok]
        again = helpers.call_action("webhook_recover", id=hook, since=start)
        assert again["queued"] == 0  # all received: nothing goes twice
        assert _pending_count() == 0

    @pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "0")
    def test_events_from_before_it_existed_as_its_owner_may_read_them(
        self, receiver, cast
    ):
        start = datetime.datetime.utcnow() - datetime.timedelta(minutes=5)
        hook = helpers.call_action(
            "webhook_create",
            context=as_(None),
            topic="dataset/create",
            address=receiver.url,
        )
        result = helpers.call_action(
            "webhook_recover", id=hook, since=start.isoformat()
        )
        assert result["queued"] == 2  # the public and the private dataset
        deliver_pending()
        assert receiver.wait_for(1)
        assert [r.json["entity"]["id"] for r in receiver.received] == [
            cast.public["id"]
        ]  # anonymous: the private one is skipped at sending

    @pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "0")
    def test_a_window_too_big_for_one_call_continues_with_next(
        self, receiver, monkeypatch
    ):
        start = datetime.datetime.utcnow().isoformat()
        hook = helpers.call_action("webhook_create", topic="*", address=receiver.url)
        for _ in range(3):
            factories.Dataset()
        monkeypatch.setattr(action, "MAX_RECOVER", 2)
        first = helpers.call_action("webhook_recover", id=hook, since=start)
        assert first["complete"] is False and first["queued"] == 2
        second = helpers.call_action("webhook_recover", id=hook, since=first["next"])
        assert second["complete"] is True and second["queued"] == 1

    def test_a_stranger_cannot_recover_anothers_webhook(self, receiver):
        owner, stranger = factories.User(), factories.User()
        hook = helpers.call_action(
            "webhook_create", context=as_(owner), topic="*", address=receiver.url
        )
        for who in (stranger, None):
            with pytest.raises(tk.ObjectNotFound):
                helpers.call_action(
                    "webhook_recover", context=as_(who), id=hook, since="2020-01-01"
                )


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_the_feed_through_ckanapi_against_a_live_site(live_site, cast):
    def client(user: dict | None) -> ckanapi.RemoteCKAN:
        if user is None:
            return ckanapi.RemoteCKAN(live_site.url)
        token = factories.APIToken(user=user["name"])["token"]
        return ckanapi.RemoteCKAN(live_site.url, apikey=token)

    def seen(user: dict | None) -> set[str]:
        page = client(user).action.webhook_event_list(topic="dataset/create")
        return set(entity_ids(page["items"]))

    assert seen(None) == {cast.public["id"]}
    assert seen(cast.stranger) == {cast.public["id"]}
    assert seen(cast.member) == {cast.public["id"], cast.private["id"]}
    got = client(None).action.webhook_event_list(limit=1)
    assert got["next"].startswith("cur_")


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestSequencePerWebhook:
    def test_each_webhook_counts_its_own_events_one_by_one(self, receiver):
        first = helpers.call_action(
            "webhook_create", topic="dataset/create", address=f"{receiver.url}/a"
        )
        factories.Dataset()
        deliver_pending()
        second = helpers.call_action(
            "webhook_create", topic="dataset/create", address=f"{receiver.url}/b"
        )
        for _ in range(2):
            factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(5)
        numbers: dict[str, list[int]] = {first: [], second: []}
        for body in receiver.bodies():
            numbers[body["webhook_id"]].append(body["sequence"])
        assert sorted(numbers[first]) == [1, 2, 3]
        assert sorted(numbers[second]) == [1, 2]  # not the site's count

    def test_what_the_owner_may_not_see_takes_no_number(self, receiver, cast):
        hook = helpers.call_action(
            "webhook_create",
            context=as_(None),
            topic="dataset/create",
            address=receiver.url,
        )
        factories.Dataset(owner_org=cast.org["id"], private=True)  # skipped
        visible = factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(1)
        (body,) = receiver.bodies()
        assert body["entity"]["id"] == visible["id"]
        assert body["sequence"] == 1 and body["webhook_id"] == hook

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "0 0")
    @pytest.mark.ckan_config("ckanext.webhooks.max_failures", "0")
    @pytest.mark.ckan_config("ckanext.webhooks.concurrency", "1")
    @pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "0")
    def test_a_gap_is_seen_and_recovery_fills_it_with_the_same_number(self, receiver):
        start = datetime.datetime.utcnow().isoformat()
        hook = helpers.call_action(
            "webhook_create", topic="dataset/create", address=receiver.url
        )
        factories.Dataset()
        deliver_pending()
        receiver.default.status = 500
        lost = factories.Dataset()
        deliver_pending()  # three attempts, all with number 2, given up
        receiver.default.status = 200
        factories.Dataset()
        deliver_pending()
        got = [(b["sequence"], b["entity"]["id"]) for b in receiver.bodies()]
        assert [n for n, _ in got] == [1, 2, 2, 2, 3]  # the retries keep theirs
        assert receiver.received[-1].json["sequence"] == 3
        # The receiver saw 1, then 3 succeed: 2 is the gap. Recovery fills it.
        helpers.call_action("webhook_recover", id=hook, since=start)
        deliver_pending()
        last = receiver.received[-1].json
        assert (last["sequence"], last["entity"]["id"]) == (2, lost["id"])


_RAW_EVENT = text(
    "INSERT INTO webhook_event (id, topic, entity_type, entity_id, snapshot, "
    "created, expanded, private) VALUES (:id, 'custom/late', 'custom', '', "
    "'{}', now() AT TIME ZONE 'utc', true, false)"
)


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_an_event_committed_late_is_never_stepped_over():
    """Transaction A writes an event first (the smaller sequence) but commits
    after B: a reader paging in between must still get A's event."""
    engine = model.meta.engine
    with engine.connect() as slow, engine.connect() as fast:
        slow_transaction = slow.begin()
        slow.execute(_RAW_EVENT, {"id": "evt_slow"})
        with fast.begin():
            fast.execute(_RAW_EVENT, {"id": "evt_fast"})
        first = feed(None, topic="custom/late")
        assert first["items"] == []  # evt_fast waits while evt_slow may come
        slow_transaction.commit()
    rest = everything(None, since=first["next"], topic="custom/late")
    assert [item["id"] for item in rest] == ["evt_slow", "evt_fast"]


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_paging_while_another_thread_writes_sees_each_event_once():
    import threading

    written: list[str] = []

    def write() -> None:
        for _ in range(15):
            written.append(factories.Dataset()["id"])

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[str] = []
    since = None
    while writer.is_alive() or since is None:
        page = feed(None, limit=3, topic="dataset/create", since=since)
        seen += entity_ids(page["items"])
        since = page["next"]
    writer.join()
    seen += entity_ids(everything(None, since=since, topic="dataset/create"))
    assert sorted(seen) == sorted(written)
    assert len(seen) == len(set(seen))


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_a_long_transaction_in_another_database_does_not_hold_the_feed_back():
    """The DataStore's database, say, loading a big file in one transaction."""
    from sqlalchemy import create_engine

    other = create_engine(model.meta.engine.url.set(database="postgres"))
    with other.connect() as loading:
        transaction = loading.begin()
        loading.execute(text("SELECT txid_current()"))  # it holds a txid
        dataset = factories.Dataset()
        items = everything(None, topic="dataset/create")
        transaction.rollback()
    other.dispose()
    assert entity_ids(items) == [dataset["id"]]
