"""No leaks: what a webhook receives is what its owner may read, at send time.

Real users, organizations and memberships; real receivers; the delivery job
run in-process. Every webhook gets its own path on one receiver, so what each
one got can be told apart.
"""

from __future__ import annotations

import json

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks.model import WebhookDelivery


class Cast:
    """An organization, a member, an outsider, a sysadmin, and their webhooks."""

    def __init__(self, receiver, topic: str = "*"):
        self.receiver = receiver
        self.member = factories.User()
        self.outsider = factories.User()
        self.sysadmin = factories.Sysadmin()
        self.org = factories.Organization(
            users=[{"name": self.member["name"], "capacity": "editor"}]
        )
        self.hooks = {
            "member": self._hook("member", self.member["name"], topic),
            "outsider": self._hook("outsider", self.outsider["name"], topic),
            "sysadmin": self._hook("sysadmin", self.sysadmin["name"], topic),
            "anonymous": self._hook("anonymous", "", topic),
        }

    def _hook(self, who: str, user: str, topic: str) -> str:
        return helpers.call_action(
            "webhook_create",
            context={"user": user, "ignore_auth": False},
            topic=topic,
            address=f"{self.receiver.url}/{who}",
        )

    def payloads(self, who: str) -> list[dict]:
        """What the webhook of ``who`` received (its own path on the receiver)."""
        return [r.json for r in self.receiver.received if r.path == f"/{who}"]

    def received(self, who: str) -> list[tuple[str, str]]:
        """(topic, entity id) of the dataset and resource events ``who`` got.

        Organization events (public, like organizations) are left out.
        """
        return [
            (p["topic"], p["entity"]["id"])
            for p in self.payloads(who)
            if p["topic"].startswith(("dataset/", "resource/"))
        ]

    def remove_member(self) -> None:
        helpers.call_action(
            "organization_member_delete",
            context={"user": self.sysadmin["name"]},
            id=self.org["id"],
            username=self.member["name"],
        )

    def forget(self) -> None:
        self.receiver.received.clear()


def _show_as(user: dict | None, dataset_id: str) -> dict:
    context = {"user": user["name"] if user else "", "ignore_auth": False}
    # The payload went through JSON: compare like with like.
    return json.loads(
        json.dumps(helpers.call_action("package_show", context=context, id=dataset_id))
    )


def _statuses() -> set[str]:
    from ckan import model

    return {d.status for d in model.Session.query(WebhookDelivery)}


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPrivateDatasets:
    def test_private_dataset_and_resources_reach_only_readers(self, receiver, run_jobs):
        cast = Cast(receiver)
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        resource = factories.Resource(package_id=dataset["id"])
        run_jobs()

        for reader in ("member", "sysadmin"):
            got = cast.received(reader)
            assert ("dataset/create", dataset["id"]) in got
            assert ("resource/create", resource["id"]) in got
        assert cast.received("outsider") == []
        assert cast.received("anonymous") == []
        assert "skipped" in _statuses()

    def test_public_dataset_reaches_everyone(self, receiver, run_jobs):
        """The control case: the same cast, a public dataset."""
        cast = Cast(receiver)
        dataset = factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        for who in ("member", "sysadmin", "outsider", "anonymous"):
            assert ("dataset/create", dataset["id"]) in cast.received(who)

    def test_removed_member_stops_receiving_at_once(self, receiver, run_jobs):
        cast = Cast(receiver)
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        run_jobs()
        assert ("dataset/create", dataset["id"]) in cast.received("member")
        cast.forget()

        # The event is recorded while the user is still a member; the
        # membership ends before the worker sends it.
        helpers.call_action("package_patch", id=dataset["id"], notes="secret plan")
        cast.remove_member()
        run_jobs()

        assert cast.received("member") == []
        assert ("dataset/update", dataset["id"]) in cast.received("sysadmin")

    def test_owner_who_is_deleted_receives_nothing(self, receiver, run_jobs):
        cast = Cast(receiver)
        helpers.call_action("user_delete", id=cast.member["id"])
        factories.Dataset(owner_org=cast.org["id"], private=True)
        factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        assert cast.received("member") == []

    def test_filter_on_a_private_dataset_needs_read_access(self, receiver):
        cast = Cast(receiver)
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        with pytest.raises(helpers.logic.ValidationError) as error:
            helpers.call_action(
                "webhook_create",
                context={"user": cast.outsider["name"], "ignore_auth": False},
                topic="*",
                address=receiver.url + "/x",
                dataset=dataset["name"],
            )
        # Not found, as for a dataset that does not exist: no existence leak.
        assert "not found" in error.value.error_dict["dataset"][0]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDrafts:
    def test_drafts_are_never_sent(self, receiver, run_jobs):
        cast = Cast(receiver)
        draft = factories.Dataset(owner_org=cast.org["id"], state="draft")
        helpers.call_action("package_patch", id=draft["id"], notes="still draft")
        run_jobs()
        assert all(cast.received(who) == [] for who in cast.hooks)

    def test_a_draft_made_active_is_announced_once_active(self, receiver, run_jobs):
        cast = Cast(receiver)
        draft = factories.Dataset(owner_org=cast.org["id"], state="draft")
        run_jobs()
        assert all(cast.received(who) == [] for who in cast.hooks)
        helpers.call_action("package_patch", id=draft["id"], state="active")
        run_jobs()
        assert ("dataset/create", draft["id"]) in cast.received("outsider")


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestVisibilityChanges:
    def test_public_to_private_stops_outsiders(self, receiver, run_jobs):
        cast = Cast(receiver)
        dataset = factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        assert cast.received("outsider")
        cast.forget()

        helpers.call_action("package_patch", id=dataset["id"], private=True)
        helpers.call_action("package_patch", id=dataset["id"], notes="now hidden")
        run_jobs()

        assert cast.received("outsider") == []
        assert cast.received("anonymous") == []
        assert ("dataset/update", dataset["id"]) in cast.received("member")

    def test_event_recorded_while_public_is_not_sent_once_private(
        self, receiver, run_jobs
    ):
        """The payload is built at send time, from what the owner may read then."""
        cast = Cast(receiver)
        dataset = factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        cast.forget()
        helpers.call_action("package_patch", id=dataset["id"], notes="public news")
        helpers.call_action("package_patch", id=dataset["id"], private=True)
        run_jobs()

        assert cast.received("outsider") == []
        assert cast.received("anonymous") == []
        assert cast.payloads("member")
        for payload in cast.payloads("member"):
            assert payload["entity"]["private"] is True

    def test_delete_of_a_private_dataset_is_not_announced_to_outsiders(
        self, receiver, run_jobs
    ):
        cast = Cast(receiver, topic="dataset/delete")
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        helpers.call_action("package_delete", id=dataset["id"])
        run_jobs()

        for reader in ("member", "sysadmin"):
            assert cast.received(reader) == [("dataset/delete", dataset["id"])]
        assert cast.received("outsider") == []
        assert cast.received("anonymous") == []

    def test_made_private_and_deleted_at_once_is_not_announced(
        self, receiver, run_jobs
    ):
        cast = Cast(receiver, topic="dataset/delete")
        dataset = factories.Dataset(owner_org=cast.org["id"])
        helpers.call_action(
            "package_patch", id=dataset["id"], private=True, state="deleted"
        )
        run_jobs()
        assert cast.received("outsider") == []
        assert cast.received("anonymous") == []
        assert cast.received("member") == [("dataset/delete", dataset["id"])]

    def test_delete_of_a_private_dataset_after_the_member_left(
        self, receiver, run_jobs
    ):
        cast = Cast(receiver, topic="dataset/delete")
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        helpers.call_action("package_delete", id=dataset["id"])
        cast.remove_member()
        run_jobs()
        assert cast.received("member") == []
        assert cast.received("sysadmin") == [("dataset/delete", dataset["id"])]

    def test_delete_of_a_public_dataset_is_announced_to_all(self, receiver, run_jobs):
        cast = Cast(receiver, topic="dataset/delete")
        dataset = factories.Dataset(owner_org=cast.org["id"])
        helpers.call_action("package_delete", id=dataset["id"])
        run_jobs()
        for who in ("member", "outsider", "sysadmin", "anonymous"):
            assert cast.received(who) == [("dataset/delete", dataset["id"])]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPayloadIsWhatTheOwnerCouldFetch:
    def test_private_dataset_entity_equals_package_show_as_owner(
        self, receiver, run_jobs
    ):
        cast = Cast(receiver, topic="dataset/create")
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        run_jobs()
        (payload,) = cast.payloads("member")
        assert payload["entity"] == _show_as(cast.member, dataset["id"])

    def test_public_dataset_entity_equals_package_show_for_each_owner(
        self, receiver, run_jobs
    ):
        cast = Cast(receiver, topic="dataset/create")
        dataset = factories.Dataset(owner_org=cast.org["id"])
        run_jobs()
        (payload,) = cast.payloads("member")
        assert payload["entity"] == _show_as(cast.member, dataset["id"])
        (payload,) = cast.payloads("anonymous")
        assert payload["entity"] == _show_as(None, dataset["id"])

    def test_resource_entity_equals_the_resource_of_package_show(
        self, receiver, run_jobs
    ):
        cast = Cast(receiver, topic="resource/create")
        dataset = factories.Dataset(owner_org=cast.org["id"], private=True)
        resource = factories.Resource(package_id=dataset["id"])
        run_jobs()
        (payload,) = cast.payloads("member")
        (shown,) = _show_as(cast.member, dataset["id"])["resources"]
        assert shown["id"] == resource["id"]
        assert payload["entity"] == shown
        assert cast.received("outsider") == []
