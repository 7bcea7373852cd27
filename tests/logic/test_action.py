"""webhook_* actions: contract, validation, and nothing half-written."""

import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers

from tests.helpers import count


def create(**data):
    data.setdefault("topic", "dataset/create")
    data.setdefault("address", "https://example.com/callback")
    return helpers.call_action("webhook_create", **data)


def errors_of(exc_info):
    return exc_info.value.error_dict


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCreateShowDelete:
    def test_create_returns_a_long_random_id(self):
        first, second = create(), create()
        assert isinstance(first, str)
        assert len(first) >= 32 and first != second
        assert all(c.isalnum() or c in "-_" for c in first)

    def test_show_returns_the_webhook_with_its_secret(self):
        hook_id = create(address="https://example.com/a?b=c")
        hook = helpers.call_action("webhook_show", id=hook_id)
        assert hook["id"] == hook_id
        assert hook["topic"] == "dataset/create"
        assert hook["address"] == "https://example.com/a?b=c"
        assert hook["secret"].startswith("whsec_")
        assert hook["active"] is True
        assert hook["owner_id"] is None
        assert hook["created"]

    def test_owner_is_the_creating_user(self):
        user = factories.User()
        hook_id = helpers.call_action(
            "webhook_create",
            context={"user": user["name"], "ignore_auth": False},
            topic="dataset/update",
            address="https://example.com/x",
        )
        assert helpers.call_action("webhook_show", id=hook_id)["owner_id"] == user["id"]

    def test_delete(self):
        hook_id = create()
        helpers.call_action("webhook_delete", id=hook_id)
        with pytest.raises(tk.ObjectNotFound):
            helpers.call_action("webhook_show", id=hook_id)
        with pytest.raises(tk.ObjectNotFound):
            helpers.call_action("webhook_delete", id=hook_id)

    def test_filters_are_stored_as_ids(self):
        org = factories.Organization()
        dataset = factories.Dataset(owner_org=org["id"])
        hook_id = create(dataset=dataset["name"], organization=org["name"])
        hook = helpers.call_action("webhook_show", id=hook_id)
        assert hook["dataset"] == dataset["id"]
        assert hook["organization"] == org["id"]

    def test_topic_list(self):
        topics = helpers.call_action("webhook_topic_list")
        for topic in (
            "dataset/create",
            "dataset/update",
            "dataset/delete",
            "resource/create",
            "resource/update",
            "resource/delete",
        ):
            assert topic in topics


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestValidation:
    @pytest.mark.parametrize(
        ("data", "field", "words"),
        [
            ({"topic": "dataset/explode"}, "topic", "dataset/create"),
            ({"topic": ""}, "topic", "Missing value"),
            ({"topic": 42}, "topic", "string"),
            ({"address": "ftp://example.com/x"}, "address", "http"),
            ({"address": "not a url"}, "address", "http"),
            ({"address": "https://"}, "address", "host"),
            ({"address": "https://user:pw@example.com/"}, "address", "password"),
            ({"address": "http://169.254.169.254/latest"}, "address", "not a public"),
            ({"address": ["https://example.com"]}, "address", "string"),
            ({"address": "https://example.com/" + "x" * 3000}, "address", "2000"),
            ({"dataset": "no-such-dataset"}, "dataset", "not found"),
            ({"organization": "no-such-org"}, "organization", "not found"),
            ({"colour": "blue"}, "colour", "Unknown field"),
        ],
    )
    def test_bad_input_names_the_field(self, data, field, words):
        with pytest.raises(tk.ValidationError) as exc_info:
            create(**data)
        messages = " ".join(errors_of(exc_info)[field])
        assert words.lower() in messages.lower()
        assert count("webhook") == 0

    def test_missing_fields(self):
        with pytest.raises(tk.ValidationError) as exc_info:
            helpers.call_action("webhook_create")
        assert set(errors_of(exc_info)) == {"topic", "address"}
        assert count("webhook") == 0


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestUpdate:
    def test_update_fields(self):
        dataset = factories.Dataset()
        hook_id = create()
        hook = helpers.call_action(
            "webhook_update",
            id=hook_id,
            topic="resource/*",
            address="https://example.org/new",
            dataset=dataset["id"],
        )
        assert hook["topic"] == "resource/*"
        assert hook["address"] == "https://example.org/new"
        assert hook["dataset"] == dataset["id"]
        hook = helpers.call_action("webhook_update", id=hook_id, dataset="")
        assert hook["dataset"] is None

    def test_disable_and_enable(self):
        hook_id = create()
        hook = helpers.call_action("webhook_update", id=hook_id, active=False)
        assert hook["active"] is False and hook["disabled_at"]
        hook = helpers.call_action("webhook_update", id=hook_id, active="true")
        assert hook["active"] is True
        assert hook["disabled_at"] is None and hook["failure_count"] == 0

    def test_bad_update_changes_nothing(self):
        hook_id = create()
        with pytest.raises(tk.ValidationError) as exc_info:
            helpers.call_action(
                "webhook_update",
                id=hook_id,
                address="https://example.org/fine",
                topic="nope",
            )
        assert "topic" in errors_of(exc_info)
        hook = helpers.call_action("webhook_show", id=hook_id)
        assert hook["address"] == "https://example.com/callback"

    def test_active_must_be_boolean(self):
        hook_id = create()
        with pytest.raises(tk.ValidationError) as exc_info:
            helpers.call_action("webhook_update", id=hook_id, active="maybe")
        assert "active" in errors_of(exc_info)

    def test_unknown_id(self):
        with pytest.raises(tk.ObjectNotFound):
            helpers.call_action("webhook_update", id="nope", active=False)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestList:
    def test_own_webhooks_only_and_sysadmin_sees_all(self):
        alice, bob = factories.User(), factories.User()
        sysadmin = factories.Sysadmin()
        for user in (alice, alice, bob):
            helpers.call_action(
                "webhook_create",
                context={"user": user["name"], "ignore_auth": False},
                topic="dataset/create",
                address="https://example.com/x",
            )
        create()  # anonymous

        def listed(user):
            return helpers.call_action(
                "webhook_list", context={"user": user["name"], "ignore_auth": False}
            )

        assert {h["owner_id"] for h in listed(alice)} == {alice["id"]}
        assert len(listed(alice)) == 2
        assert len(listed(bob)) == 1
        assert len(listed(sysadmin)) == 4

    def test_anonymous_cannot_list(self):
        with pytest.raises(tk.NotAuthorized):
            helpers.call_action(
                "webhook_list", context={"user": "", "ignore_auth": False}
            )

    def test_paging(self):
        sysadmin = factories.Sysadmin()
        for _ in range(5):
            create()
        context = {"user": sysadmin["name"], "ignore_auth": False}
        page = helpers.call_action("webhook_list", context=context, limit=2, offset=4)
        assert len(page) == 1
        with pytest.raises(tk.ValidationError) as exc_info:
            helpers.call_action("webhook_list", context=context, limit=-1)
        assert "limit" in errors_of(exc_info)
