"""How CKAN actions map to webhook topics (the table in README.rst)."""

import ckan.model as model
import pytest
from ckan.tests import factories, helpers
from sqlalchemy import text

from tests.helpers import events


@pytest.fixture
def everything(receiver):
    """A webhook on every topic, so every event is recorded."""
    return helpers.call_action("webhook_create", topic="*", address=receiver.url)


@pytest.mark.usefixtures("with_plugins", "clean_db", "everything")
class TestTopicMapping:
    def test_package_create_is_one_dataset_create(self):
        dataset = factories.Dataset()
        assert events() == [("dataset/create", dataset["id"])]

    def test_package_update(self):
        dataset = factories.Dataset()
        helpers.call_action("package_patch", id=dataset["id"], title="New")
        assert events()[1:] == [("dataset/update", dataset["id"])]

    def test_resource_create_also_updates_the_dataset(self):
        dataset = factories.Dataset()
        resource = factories.Resource(package_id=dataset["id"])
        assert sorted(events()[1:]) == [
            ("dataset/update", dataset["id"]),
            ("resource/create", resource["id"]),
        ]

    def test_resource_update(self):
        resource = factories.Resource()
        before = len(events())
        helpers.call_action("resource_patch", id=resource["id"], name="renamed")
        assert sorted(events()[before:]) == [
            ("dataset/update", resource["package_id"]),
            ("resource/update", resource["id"]),
        ]

    def test_resource_delete(self):
        resource = factories.Resource()
        before = len(events())
        helpers.call_action("resource_delete", id=resource["id"])
        assert sorted(events()[before:]) == [
            ("dataset/update", resource["package_id"]),
            ("resource/delete", resource["id"]),
        ]

    def test_package_delete(self):
        dataset = factories.Dataset()
        helpers.call_action("package_delete", id=dataset["id"])
        assert events()[1:] == [("dataset/delete", dataset["id"])]

    def test_purge_of_a_live_dataset_is_a_delete(self):
        dataset = factories.Dataset()
        resource = factories.Resource(package_id=dataset["id"])
        before = len(events())
        helpers.call_action("dataset_purge", id=dataset["id"])
        assert sorted(events()[before:]) == [
            ("dataset/delete", dataset["id"]),
            ("resource/delete", resource["id"]),
        ]

    def test_purge_of_a_deleted_dataset_says_nothing_more(self):
        dataset = factories.Dataset()
        helpers.call_action("package_delete", id=dataset["id"])
        before = len(events())
        helpers.call_action("dataset_purge", id=dataset["id"])
        assert events()[before:] == []

    def test_draft_is_silent_until_it_becomes_active(self):
        dataset = factories.Dataset(state="draft")
        factories.Resource(package_id=dataset["id"])
        assert events() == []
        helpers.call_action("package_patch", id=dataset["id"], state="active")
        assert events() == [("dataset/create", dataset["id"])]

    def test_undelete_is_a_create(self):
        dataset = factories.Dataset()
        helpers.call_action("package_delete", id=dataset["id"])
        helpers.call_action("package_patch", id=dataset["id"], state="active")
        assert events()[-1] == ("dataset/create", dataset["id"])

    def test_rolled_back_change_records_nothing(self):
        import ckan.model as model

        dataset = factories.Dataset()
        before = len(events())
        pkg = model.Package.get(dataset["id"])
        pkg.title = "never committed"
        model.Session.flush()
        model.Session.rollback()
        assert len(events()) == before

    def test_failed_action_records_nothing(self, monkeypatch):
        import ckan.model as model
        from ckan.lib.search import SearchIndexError, index

        def broken(*args, **kwargs):
            raise SearchIndexError("index down")

        dataset = factories.Dataset()
        monkeypatch.setattr(index.PackageSearchIndex, "update_dict", broken)
        before = len(events())
        with pytest.raises(SearchIndexError):
            helpers.call_action("package_patch", id=dataset["id"], title="x")
        model.Session.rollback()  # as CKAN does at the end of a failed request
        assert len(events()) == before


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWakingOnlyForWhatCanMatch:
    def test_no_webhooks_no_work_but_the_feed_keeps_it(self):
        dataset = factories.Dataset()
        assert events() == []
        kept = model.Session.execute(
            text("SELECT topic, entity_id, expanded FROM webhook_event")
        ).all()
        model.Session.commit()
        assert [tuple(row) for row in kept] == [("dataset/create", dataset["id"], True)]

    def test_dataset_filter(self, receiver):
        followed, other = factories.Dataset(), factories.Dataset()
        helpers.call_action(
            "webhook_create",
            topic="dataset/update",
            address=receiver.url,
            dataset=followed["name"],
        )
        helpers.call_action("package_patch", id=other["id"], title="x")
        helpers.call_action("package_patch", id=followed["id"], title="y")
        assert events() == [("dataset/update", followed["id"])]

    def test_organization_filter(self, receiver):
        org = factories.Organization()
        inside = factories.Dataset(owner_org=org["id"])
        outside = factories.Dataset()
        helpers.call_action(
            "webhook_create",
            topic="dataset/*",
            address=receiver.url,
            organization=org["name"],
        )
        helpers.call_action("package_patch", id=outside["id"], title="x")
        helpers.call_action("package_patch", id=inside["id"], title="y")
        assert events() == [("dataset/update", inside["id"])]


@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.parametrize("table", ["webhook_event", "webhook"])
def test_a_broken_outbox_never_breaks_the_users_change(receiver, caplog, table):
    """Tables not migrated (here: renamed away): the dataset change commits."""
    helpers.call_action("webhook_create", topic="*", address=receiver.url)
    dataset = factories.Dataset()
    model.Session.execute(text(f"ALTER TABLE {table} RENAME TO gone"))
    model.Session.commit()
    try:
        helpers.call_action("package_patch", id=dataset["id"], title="Still saved")
        factories.Organization(name="still-created")
    finally:
        model.Session.rollback()
        model.Session.execute(text(f"ALTER TABLE gone RENAME TO {table}"))
        model.Session.commit()
    assert helpers.call_action("package_show", id=dataset["id"])["title"] == (
        "Still saved"
    )
    assert helpers.call_action("organization_show", id="still-created")
    assert table in caplog.text  # the failure is logged, not hidden
