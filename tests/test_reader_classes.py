"""Reader classes: one rendering per class, and still each owner's own view.

Deliveries render an entity once per class of readers (visibility.py) and
decide who may read in SQL. These tests hold every delivery against CKAN
itself: ``package_show`` (or ``organization_show``) run as the webhook's real
owner, compared byte for byte, and the SQL's verdict against CKAN's. Real
users, memberships and receivers; the delivery job run in-process.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ckan import model
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.delivery.visibility import Hidden, ReaderClassViews
from ckanext.webhooks.model import Webhook, WebhookDelivery, WebhookEvent

TAILORING = "webhooks webhooks_test_tailoring"
GROUP_SHOW = {
    "include_datasets": False,
    "include_users": False,
    "include_followers": False,
    "include_groups": False,
}


class Audience:
    """Webhooks of many owners on one receiver, each on a path of its own."""

    def __init__(self, receiver: Any, topic: str = "*") -> None:
        self.receiver = receiver
        self.topic = topic
        self.owners: dict[str, dict | None] = {}

    def subscribe(self, who: str, user: dict | None) -> None:
        self.owners[who] = user
        helpers.call_action(
            "webhook_create",
            context={"user": user["name"] if user else "", "ignore_auth": False},
            topic=self.topic,
            address=f"{self.receiver.url}/{who}",
        )

    def entities(self, who: str, topic: str, entity_id: str | None = None) -> list:
        """What the webhook of ``who`` got for ``topic`` (about ``entity_id``)."""
        return [
            r.json["entity"]
            for r in self.receiver.received
            if r.path == f"/{who}"
            and r.json["topic"] == topic
            and entity_id in (None, r.json["entity"].get("id"))
        ]


def _as_sent(value: Any) -> str:
    """The JSON text of ``value`` as a delivery body carries it (key order
    kept): equal texts are the same bytes on the wire."""
    return json.dumps(json.loads(json.dumps(value, default=str)))


def _show_as(user: dict | None, action: str, **data: Any) -> Any:
    """``action`` as ``user`` through the action API; None if refused."""
    context = {"user": user["name"] if user else "", "ignore_auth": False}
    try:
        return helpers.call_action(action, context=context, **data)
    except (helpers.logic.NotAuthorized, helpers.logic.NotFound):
        return None


def _check_against_ckan(audience: Audience, topic: str, dataset_id: str) -> set:
    """Every owner got exactly package_show as themselves, or nothing if CKAN
    refuses them (or the dataset is not active); returns who got it."""
    readers = set()
    for who, user in audience.owners.items():
        shown = _show_as(user, "package_show", id=dataset_id)
        if shown is not None and shown["state"] != "active":
            shown = None
        got = audience.entities(who, topic, dataset_id)
        if shown is None:
            assert got == [], f"{who} got a dataset CKAN does not show them"
            continue
        assert len(got) == 1, f"{who} got {len(got)} deliveries"
        assert _as_sent(got[0]) == _as_sent(shown), f"{who} got another view"
        readers.add(who)
    return readers


def _statuses() -> list[str]:
    return [d.status for d in model.Session.query(WebhookDelivery)]


def _collaborate(dataset: dict, user: dict, capacity: str = "member") -> None:
    helpers.call_action(
        "package_collaborator_create",
        id=dataset["id"],
        user_id=user["id"],
        capacity=capacity,
    )


@pytest.fixture
def cast() -> dict[str, Any]:
    """An organization with one user per capacity, and people outside it."""
    people = {
        name: factories.User()
        for name in ("admin", "editor", "member", "outsider", "outsider2")
    }
    people["sysadmin"] = factories.Sysadmin()
    people["sysadmin2"] = factories.Sysadmin()
    people["org"] = factories.Organization(
        users=[
            {"name": people[c]["name"], "capacity": c}
            for c in ("admin", "editor", "member")
        ]
    )
    return people


def _audience(receiver: Any, cast: dict, topic: str, *extra: str) -> Audience:
    audience = Audience(receiver, topic)
    for who in ("admin", "editor", "member", "outsider", "outsider2"):
        audience.subscribe(who, cast[who])
    for who in ("sysadmin", "sysadmin2", *extra):
        audience.subscribe(who, cast[who])
    audience.subscribe("anonymous", None)
    audience.subscribe("anonymous2", None)
    return audience


@pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
@pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDatasets:
    def test_public_dataset_reaches_every_owner_as_they_see_it(
        self, receiver, run_jobs, cast
    ):
        audience = _audience(receiver, cast, "*")
        dataset = factories.Dataset(
            owner_org=cast["org"]["id"],
            tags=[{"name": "rivers"}],
            extras=[{"key": "source", "value": "survey"}],
            maintainer_email="keeper@example.org",
        )
        resource = factories.Resource(package_id=dataset["id"])
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/create", dataset["id"])
        assert readers == set(audience.owners)
        for who, user in audience.owners.items():
            (got,) = audience.entities(who, "resource/create")
            (shown,) = _show_as(user, "package_show", id=dataset["id"])["resources"]
            assert shown["id"] == resource["id"]
            assert _as_sent(got) == _as_sent(shown)

    @pytest.mark.ckan_config("ckan.auth.allow_dataset_collaborators", True)
    def test_private_dataset_reaches_sysadmins_members_and_collaborators(
        self, receiver, run_jobs, cast
    ):
        cast["collaborator"] = factories.User()
        audience = _audience(receiver, cast, "dataset/update", "collaborator")
        dataset = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        _collaborate(dataset, cast["collaborator"])
        helpers.call_action("package_patch", id=dataset["id"], notes="internal")
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/update", dataset["id"])
        assert readers == {
            "admin",
            "editor",
            "member",
            "sysadmin",
            "sysadmin2",
            "collaborator",
        }
        assert _statuses().count("skipped") == 4  # outsiders and anonymous

    @pytest.mark.ckan_config("ckanext.webhooks.concurrency", 1)
    def test_small_batches_carry_each_class_view_over(self, receiver, run_jobs, cast):
        """Two claims a batch: an event's deliveries span many batches, its
        class views are carried over, and who may read is asked in each."""
        audience = _audience(receiver, cast, "dataset/update")
        private = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        public = factories.Dataset(owner_org=cast["org"]["id"])
        for dataset in (private, public):
            helpers.call_action("package_patch", id=dataset["id"], notes="new")
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/update", private["id"])
        assert readers == {"admin", "editor", "member", "sysadmin", "sysadmin2"}
        readers = _check_against_ckan(audience, "dataset/update", public["id"])
        assert readers == set(audience.owners)

    def test_collaborators_read_nothing_once_collaboration_is_off(
        self, receiver, run_jobs, cast, ckan_config, monkeypatch
    ):
        key = "ckan.auth.allow_dataset_collaborators"
        monkeypatch.setitem(ckan_config, key, True)
        cast["collaborator"] = factories.User()
        audience = _audience(receiver, cast, "dataset/update", "collaborator")
        dataset = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        _collaborate(dataset, cast["collaborator"], "editor")
        helpers.call_action("package_patch", id=dataset["id"], notes="internal")
        monkeypatch.setitem(ckan_config, key, False)
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/update", dataset["id"])
        assert "collaborator" not in readers
        assert {"member", "sysadmin"} <= readers

    def test_member_removed_before_sending_gets_nothing(self, receiver, run_jobs, cast):
        audience = _audience(receiver, cast, "dataset/update")
        dataset = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        helpers.call_action("package_patch", id=dataset["id"], notes="secret plan")
        helpers.call_action(
            "organization_member_delete",
            context={"user": cast["sysadmin"]["name"]},
            id=cast["org"]["id"],
            username=cast["editor"]["name"],
        )
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/update", dataset["id"])
        assert "editor" not in readers
        assert {"admin", "member", "sysadmin"} <= readers

    def test_deleted_owner_gets_nothing(self, receiver, run_jobs, cast):
        audience = _audience(receiver, cast, "dataset/create")
        helpers.call_action("user_delete", id=cast["outsider"]["id"])
        helpers.call_action("user_delete", id=cast["member"]["id"])
        public = factories.Dataset(owner_org=cast["org"]["id"])
        private = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/create", public["id"])
        assert readers == set(audience.owners) - {"outsider", "member"}
        readers = _check_against_ckan(audience, "dataset/create", private["id"])
        assert readers == {"admin", "editor", "sysadmin", "sysadmin2"}

    def test_admin_of_a_parent_organization_reads_its_children(
        self, receiver, run_jobs, cast
    ):
        """ckan.auth.roles_that_cascade_to_sub_groups (admin by default)."""
        parent_admin, parent_editor = factories.User(), factories.User()
        parent = factories.Organization(
            users=[
                {"name": parent_admin["name"], "capacity": "admin"},
                {"name": parent_editor["name"], "capacity": "editor"},
            ]
        )
        child = factories.Organization()
        helpers.call_action(
            "member_create",
            id=child["id"],
            object=parent["id"],
            object_type="group",
            capacity="parent",
        )
        audience = Audience(receiver, "dataset/create")
        audience.subscribe("parent_admin", parent_admin)
        audience.subscribe("parent_editor", parent_editor)
        audience.subscribe("outsider", cast["outsider"])
        dataset = factories.Dataset(owner_org=child["id"], private=True)
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/create", dataset["id"])
        assert readers == {"parent_admin"}

    def test_private_dataset_left_without_organization_reaches_its_creator(
        self, receiver, run_jobs, cast
    ):
        """CKAN 2.11's organization_purge leaves its private datasets private
        and unowned (2.12 refuses to): only their creator may read them."""
        audience = _audience(receiver, cast, "dataset/create")
        dataset = factories.Dataset(
            owner_org=cast["org"]["id"], private=True, user=cast["editor"]
        )
        model.Session.execute(
            text("UPDATE package SET owner_org = NULL WHERE id = :id"),
            {"id": dataset["id"]},
        )
        model.Session.commit()
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/create", dataset["id"])
        assert readers == {"editor", "sysadmin", "sysadmin2"}

    def test_custom_event_about_a_private_dataset_reaches_its_readers(
        self, receiver, run_jobs, cast
    ):
        audience = _audience(receiver, cast, "custom/report")
        dataset = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        helpers.call_action(
            "webhook_event_publish",
            context={"user": cast["sysadmin"]["name"]},
            topic="custom/report",
            data={"rows": 3},
            dataset=dataset["id"],
        )
        run_jobs()

        got = {
            who for who in audience.owners if audience.entities(who, "custom/report")
        }
        assert got == {"admin", "editor", "member", "sysadmin", "sysadmin2"}

    @pytest.mark.skipif(
        not hasattr(model.Package, "plugin_data"), reason="no plugin_data in CKAN"
    )
    def test_plugin_data_reaches_nobody(self, receiver, run_jobs, cast):
        """Deliveries never ask for plugin_data, which only sysadmins may ask
        for: no one gets it, and sysadmins still get their own view."""
        audience = _audience(receiver, cast, "dataset/create")
        dataset = helpers.call_action(
            "package_create",
            context={"user": cast["sysadmin"]["name"], "ignore_auth": False},
            name="with-plugin-data",
            owner_org=cast["org"]["id"],
            plugin_data={"harvester": {"guid": "abc"}},
        )
        run_jobs()

        readers = _check_against_ckan(audience, "dataset/create", dataset["id"])
        assert readers == set(audience.owners)
        for who in audience.owners:
            assert "plugin_data" not in audience.entities(who, "dataset/create")[0]
        stored = _show_as(
            cast["sysadmin"], "package_show", id=dataset["id"], include_plugin_data=True
        )
        assert stored["plugin_data"] == {"harvester": {"guid": "abc"}}


@pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
@pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestOrganizationsAndGroups:
    @pytest.mark.ckan_config("ckan.auth.allow_dataset_collaborators", True)
    def test_organization_reaches_every_owner_as_they_see_it(
        self, receiver, run_jobs, cast
    ):
        cast["collaborator"] = factories.User()
        audience = _audience(receiver, cast, "organization/update", "collaborator")
        dataset = factories.Dataset(owner_org=cast["org"]["id"], private=True)
        _collaborate(dataset, cast["collaborator"])
        helpers.call_action(
            "organization_patch", id=cast["org"]["id"], description="Rivers"
        )
        run_jobs()

        for who, user in audience.owners.items():
            (got,) = audience.entities(who, "organization/update")
            shown = _show_as(
                user, "organization_show", id=cast["org"]["id"], **GROUP_SHOW
            )
            assert _as_sent(got) == _as_sent(shown), who

    def test_group_reaches_every_owner_as_they_see_it(self, receiver, run_jobs, cast):
        audience = _audience(receiver, cast, "group/create")
        group = factories.Group(user=cast["member"])
        run_jobs()

        for who, user in audience.owners.items():
            (got,) = audience.entities(who, "group/create")
            shown = _show_as(user, "group_show", id=group["id"], **GROUP_SHOW)
            assert _as_sent(got) == _as_sent(shown), who


@pytest.mark.ckan_config("ckan.plugins", TAILORING)
@pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
@pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPluginsThatTailorPackageShow:
    """tests/tailoring_plugin.py stamps each view with its reader's name and
    shows the maintainer's email to the dataset's creator only."""

    def _deliver(self, receiver, run_jobs, cast) -> tuple[Audience, dict]:
        audience = _audience(receiver, cast, "dataset/create")
        dataset = factories.Dataset(
            owner_org=cast["org"]["id"],
            maintainer_email="keeper@example.org",
            user=cast["editor"],
        )
        run_jobs()
        return audience, dataset

    @pytest.mark.ckan_config("ckanext.webhooks.render_per_owner", True)
    def test_render_per_owner_gives_each_owner_their_own_view(
        self, receiver, run_jobs, cast
    ):
        audience, dataset = self._deliver(receiver, run_jobs, cast)

        readers = _check_against_ckan(audience, "dataset/create", dataset["id"])
        assert readers == set(audience.owners)
        for who, user in audience.owners.items():
            (got,) = audience.entities(who, "dataset/create")
            assert got["viewed_by"] == (user["name"] if user else "")
            assert ("maintainer_email" in got) == (who == "editor")

    def test_without_it_a_class_shares_one_view(self, receiver, run_jobs, cast):
        """What render_per_owner is for: with it off, one reader's tailored
        view goes to the whole class - here, one name and maybe the email."""
        audience, dataset = self._deliver(receiver, run_jobs, cast)

        sysadmins = {"sysadmin", "sysadmin2"}
        views = {
            who: _as_sent(audience.entities(who, "dataset/create")[0])
            for who in audience.owners
        }
        own = {
            who: _as_sent(_show_as(user, "package_show", id=dataset["id"]))
            for who, user in audience.owners.items()
        }
        for reader_class in (sysadmins, set(views) - sysadmins):
            assert len({views[who] for who in reader_class}) == 1
            assert any(views[who] != own[who] for who in reader_class)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestEveryReaderAgainstCkan:
    """Each (dataset, user) straight through ReaderClassViews, against CKAN.

    Pending users may read public datasets in CKAN; webhooks of owners who
    are not active get nothing, as before reader classes.
    """

    @pytest.mark.parametrize("collaborators", [False, True])
    def test_every_pair(self, cast, ckan_config, monkeypatch, collaborators):
        key = "ckan.auth.allow_dataset_collaborators"
        monkeypatch.setitem(ckan_config, key, True)
        people = {n: cast[n] for n in ("admin", "editor", "member", "outsider")}
        people.update(sysadmin=cast["sysadmin"], collaborator=factories.User())
        pending = factories.User()
        model.Session.execute(
            text("UPDATE \"user\" SET state = 'pending' WHERE id = :id"),
            {"id": pending["id"]},
        )
        model.Session.commit()
        people["pending"] = pending
        org = cast["org"]["id"]
        datasets = [
            factories.Dataset(owner_org=org),
            factories.Dataset(owner_org=org, private=True),
            factories.Dataset(owner_org=org, private=True, state="draft"),
            factories.Dataset(),
        ]
        _collaborate(datasets[1], people["collaborator"])
        monkeypatch.setitem(ckan_config, key, collaborators)

        views = ReaderClassViews()
        for dataset in datasets:
            event = WebhookEvent(
                topic="dataset/update",
                entity_type="dataset",
                entity_id=dataset["id"],
                package_id=dataset["id"],
                snapshot="{}",
            )
            for who, user in {**people, "anonymous": None}.items():
                hook = Webhook(owner_id=user["id"] if user else None)
                shown = _show_as(user, "package_show", id=dataset["id"])
                if shown is None or shown["state"] != "active" or who == "pending":
                    with pytest.raises(Hidden):
                        views.entity(event, hook)
                else:
                    entity = views.entity(event, hook)
                    assert _as_sent(entity) == _as_sent(shown), who
