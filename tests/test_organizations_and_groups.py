"""Organization and group events, and what moves between organizations (issue 8)."""

import pytest
from ckan.tests import factories, helpers

from tests.helpers import events


def subscribe(receiver, topic, **filters):
    return helpers.call_action(
        "webhook_create", topic=topic, address=receiver.url, **filters
    )


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestOrganizationsAndGroups:
    def test_organization_lifecycle(self, receiver, run_jobs):
        subscribe(receiver, "organization/*")
        org = factories.Organization(title="Water Board")
        helpers.call_action("organization_patch", id=org["id"], title="Water")
        helpers.call_action("organization_delete", id=org["id"])
        assert events() == [
            ("organization/create", org["id"]),
            ("organization/update", org["id"]),
            ("organization/delete", org["id"]),
        ]
        run_jobs()
        assert receiver.wait_for(3)
        by_topic = {b["topic"]: b for b in receiver.bodies()}
        assert by_topic["organization/create"]["entity"]["title"] == "Water Board"
        assert by_topic["organization/update"]["entity"]["title"] == "Water"
        assert by_topic["organization/delete"]["entity"]["state"] == "deleted"

    def test_group_lifecycle(self, receiver):
        subscribe(receiver, "group/*")
        group = factories.Group()
        helpers.call_action("group_patch", id=group["id"], description="new")
        helpers.call_action("group_delete", id=group["id"])
        assert [t for t, _ in events()] == [
            "group/create",
            "group/update",
            "group/delete",
        ]

    def test_members_stay_with_members(self, receiver, run_jobs):
        member = factories.User()
        subscribe(receiver, "organization/update")
        org = factories.Organization(
            users=[{"name": member["name"], "capacity": "editor"}]
        )
        helpers.call_action("organization_patch", id=org["id"], title="Renamed")
        run_jobs()
        assert receiver.wait_for(1)
        entity = receiver.bodies()[-1]["entity"]
        assert entity["title"] == "Renamed"
        assert "users" not in entity
        assert member["name"] not in receiver.received[-1].body.decode()

    def test_memberships_are_not_announced(self, receiver):
        org = factories.Organization()
        user = factories.User()
        subscribe(receiver, "organization/*", organization=org["id"])
        helpers.call_action(
            "organization_member_create",
            id=org["id"],
            username=user["name"],
            role="editor",
        )
        assert events() == []

    def test_a_dataset_in_an_organization_is_not_an_organization_update(self, receiver):
        org = factories.Organization()
        subscribe(receiver, "*")
        dataset = factories.Dataset(owner_org=org["id"])
        assert events() == [("dataset/create", dataset["id"])]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestMoves:
    def test_dataset_moved_between_organizations(self, receiver, run_jobs):
        """Followers of the old and of the new organization both hear of it."""
        old, new = factories.Organization(), factories.Organization()
        dataset = factories.Dataset(owner_org=old["id"])
        helpers.call_action(
            "webhook_create",
            topic="dataset/update",
            address=receiver.url + "/old",
            organization=old["id"],
        )
        helpers.call_action(
            "webhook_create",
            topic="dataset/update",
            address=receiver.url + "/new",
            organization=new["id"],
        )
        helpers.call_action("package_patch", id=dataset["id"], owner_org=new["id"])
        run_jobs()
        assert receiver.wait_for(2)
        # (CKAN commits an owner_org change in two steps: /new may hear twice.)
        assert {r.path for r in receiver.received} == {"/new", "/old"}
        assert {b["entity"]["owner_org"] for b in receiver.bodies()} == {new["id"]}

    def test_private_dataset_moved_away_is_not_shown_to_old_outsiders(
        self, receiver, run_jobs
    ):
        old, new = factories.Organization(), factories.Organization()
        dataset = factories.Dataset(owner_org=old["id"], private=True)
        subscribe(receiver, "dataset/update", organization=old["id"])
        helpers.call_action("package_patch", id=dataset["id"], owner_org=new["id"])
        run_jobs()
        assert receiver.count == 0

    def test_deleted_then_purged_is_announced_once(self, receiver, run_jobs):
        dataset = factories.Dataset()
        subscribe(receiver, "dataset/delete")
        helpers.call_action("package_delete", id=dataset["id"])
        helpers.call_action("dataset_purge", id=dataset["id"])
        run_jobs()
        assert receiver.wait_for(1)
        assert [b["entity"]["id"] for b in receiver.bodies()] == [dataset["id"]]

    def test_created_then_deleted_before_delivery(self, receiver, run_jobs):
        """The create still goes out, with what is known of the dataset."""
        subscribe(receiver, "dataset/*")
        dataset = factories.Dataset()
        helpers.call_action("package_delete", id=dataset["id"])
        run_jobs()
        assert receiver.wait_for(2)
        by_topic = {b["topic"]: b["entity"] for b in receiver.bodies()}
        assert by_topic["dataset/create"]["id"] == dataset["id"]
        assert by_topic["dataset/create"]["state"] == "deleted"
        assert by_topic["dataset/delete"]["name"] == dataset["name"]

    def test_resource_cannot_be_moved_through_the_api(self, receiver):
        """resource_patch ignores package_id: nothing changes, nothing is sent."""
        first, second = factories.Dataset(), factories.Dataset()
        resource = factories.Resource(package_id=first["id"])
        subscribe(receiver, "resource/*")
        helpers.call_action(
            "resource_patch", id=resource["id"], package_id=second["id"]
        )
        shown = helpers.call_action("resource_show", id=resource["id"])
        assert shown["package_id"] == first["id"]
        assert events() == []

    def test_resource_moved_by_code_reaches_followers_of_both(self, receiver, run_jobs):
        import ckan.model as model

        first, second = factories.Dataset(), factories.Dataset()
        resource = factories.Resource(package_id=first["id"])
        for dataset, path in ((first, "/first"), (second, "/second")):
            helpers.call_action(
                "webhook_create",
                topic="resource/update",
                address=receiver.url + path,
                dataset=dataset["id"],
            )
        res = model.Resource.get(resource["id"])
        res.package_id = second["id"]
        model.Session.commit()
        run_jobs()
        assert receiver.wait_for(2)
        assert sorted(r.path for r in receiver.received) == ["/first", "/second"]
        assert {b["entity"]["package_id"] for b in receiver.bodies()} == {second["id"]}
