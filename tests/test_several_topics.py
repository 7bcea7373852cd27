"""Several topics per webhook: ``topic`` takes a list, ``topics`` comes back.

Through ckanapi against a live site and through the actions; deliveries go
to a real receiver from a real worker; the form's checkboxes; recovery; the
site-wide branch of matching found through its GIN index.
"""

from __future__ import annotations

import datetime

import ckan.model as model
import ckanapi
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.cli import webhooks as webhooks_cli
from ckanext.webhooks.delivery import deliver_pending
from ckanext.webhooks.matching import matching_webhooks_sql
from tests.test_views import PASSWORD, Browser

pytestmark = pytest.mark.usefixtures("with_plugins", "clean_db")


def refused(**data):
    with pytest.raises(tk.ValidationError) as error:
        helpers.call_action("webhook_create", **data)
    return error.value.error_dict


class TestTheAction:
    def test_the_single_topic_call_is_unchanged(self, receiver):
        hook = helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        shown = helpers.call_action("webhook_show", id=hook)
        assert shown["topic"] == "dataset/update"
        assert shown["topics"] == ["dataset/update"]
        [listed] = helpers.call_action("webhook_list")
        assert (listed["topic"], listed["topics"]) == (
            "dataset/update",
            ["dataset/update"],
        )

    def test_a_list_keeps_its_order_without_repeats(self, receiver):
        hook = helpers.call_action(
            "webhook_create",
            topic=["resource/*", " dataset/create", "resource/*", "custom/x"],
            address=receiver.url,
        )
        shown = helpers.call_action("webhook_show", id=hook)
        assert shown["topics"] == ["resource/*", "dataset/create", "custom/x"]
        assert shown["topic"] == "resource/*"

    def test_update_to_a_list_and_back(self, receiver):
        hook = helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        updated = helpers.call_action(
            "webhook_update", id=hook, topic=["group/create", "organization/*"]
        )
        assert updated["topics"] == ["group/create", "organization/*"]
        assert updated["topic"] == "group/create"
        back = helpers.call_action("webhook_update", id=hook, topic="dataset/delete")
        assert (back["topic"], back["topics"]) == ("dataset/delete", ["dataset/delete"])
        kept = helpers.call_action("webhook_update", id=hook, rate_limit=5)
        assert kept["topics"] == ["dataset/delete"]

    @pytest.mark.parametrize(
        "topic, words",
        [
            (["dataset/update", "dataset/nonsense"], "dataset/nonsense"),
            (["dataset/update", 5], "string"),
            (["dataset/update", ""], "empty"),
            ([], "Missing value"),
            ([f"custom/t{n}" for n in range(21)], "at most 20"),
        ],
    )
    def test_bad_entries_are_refused_on_topic(self, receiver, topic, words):
        errors = refused(topic=topic, address=receiver.url)
        assert words in " ".join(errors["topic"])
        assert helpers.call_action("webhook_list") == []

    def test_a_topic_that_can_never_fire_is_named(self, receiver):
        dataset = factories.Dataset()
        errors = refused(
            topic=["dataset/update", "group/create"],
            dataset=dataset["id"],
            address=receiver.url,
        )
        assert "'group/create'" in errors["topic"][0]
        assert "concern no" in errors["topic"][0]
        errors = refused(
            topic=["dataset/*", "organization/update"],
            tag="buses",
            address=receiver.url,
        )
        assert "'organization/update'" in errors["tag"][0]
        hook = helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        with pytest.raises(tk.ValidationError) as error:
            helpers.call_action(
                "webhook_update",
                id=hook,
                topic=["dataset/update", "organization/create"],
                dataset=dataset["id"],
            )
        assert "'organization/create'" in error.value.error_dict["topic"][0]
        assert helpers.call_action("webhook_show", id=hook)["topics"] == [
            "dataset/update"
        ]
        assert len(helpers.call_action("webhook_list")) == 1

    def test_the_cli_takes_more_topics(self, cli, receiver):
        result = cli.invoke(
            webhooks_cli,
            ["create", "dataset/create", receiver.url, "--topic", "group/*"],
        )
        assert result.exit_code == 0, result.output
        shown = helpers.call_action("webhook_show", id=result.output.strip())
        assert shown["topics"] == ["dataset/create", "group/*"]
        listed = cli.invoke(webhooks_cli, ["list"]).output
        assert "dataset/create,group/*" in listed


def test_each_listed_topic_is_delivered_through_ckanapi(live_site, receiver):
    admin = factories.Sysadmin()
    token = factories.APIToken(user=admin["name"])["token"]
    ckan = ckanapi.RemoteCKAN(live_site.url, apikey=token)
    hook = ckan.action.webhook_create(
        topic=["organization/create", "dataset/create", "organization/create"],
        address=receiver.url,
    )
    shown = ckan.action.webhook_show(id=hook)
    assert shown["topics"] == ["organization/create", "dataset/create"]
    assert shown["topic"] == "organization/create"
    single = ckan.action.webhook_create(topic="dataset/update", address=receiver.url)
    assert ckan.action.webhook_show(id=single)["topics"] == ["dataset/update"]

    org = ckan.action.organization_create(name="city")
    dataset = ckan.action.package_create(name="buses", owner_org=org["id"])
    ckan.action.group_create(name="transport")  # group/create: not listed
    ckan.action.package_patch(id=dataset["id"], notes="changed")
    live_site.run_worker()
    assert receiver.wait_for(3)
    got = sorted((body["webhook_id"], body["topic"]) for body in receiver.bodies())
    assert got == sorted(
        [
            (hook, "organization/create"),
            (hook, "dataset/create"),
            (single, "dataset/update"),
        ]
    )


def test_a_site_wide_webhook_of_several_topics_is_found_by_its_index(receiver):
    for n in range(15):  # anonymous ones: at most 20 per receiver
        helpers.call_action(
            "webhook_create", topic=f"custom/other{n}", address=receiver.url
        )
    wanted = helpers.call_action(
        "webhook_create", topic=["custom/a", "custom/b"], address=receiver.url
    )
    query = matching_webhooks_sql(
        topics="CAST(:subscriptions AS text[])",
        package_id=":package_id",
        previous_package_id=":package_id",
        organization_id=":organization_id",
        previous_organization_id=":organization_id",
        before="CAST(NULL AS jsonb)",
        after="CAST(NULL AS jsonb)",
    )
    binds = {
        "subscriptions": ["custom/b", "custom/*", "*"],
        "package_id": None,
        "organization_id": None,
    }
    found = model.Session.execute(text(query), binds).fetchall()
    assert [row.id for row in found] == [wanted]
    model.Session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        row[0] for row in model.Session.execute(text("EXPLAIN " + query), binds)
    )
    model.Session.rollback()
    assert "ix_webhook_follows_site" in plan, plan


@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "0")
def test_recovery_queues_only_the_listed_topics(receiver):
    start = (datetime.datetime.utcnow() - datetime.timedelta(minutes=1)).isoformat()
    factories.Organization()
    dataset = factories.Dataset()
    group = factories.Group()
    hook = helpers.call_action(
        "webhook_create", topic=["group/create", "dataset/create"], address=receiver.url
    )
    result = helpers.call_action("webhook_recover", id=hook, since=start)
    assert result["queued"] == 2
    deliver_pending()
    assert receiver.wait_for(2)
    got = {(body["topic"], body["entity"]["id"]) for body in receiver.bodies()}
    assert got == {("dataset/create", dataset["id"]), ("group/create", group["id"])}


class TestTheForm:
    @pytest.fixture
    def user(self):
        return factories.User(password=PASSWORD)

    @pytest.fixture
    def browser(self, app, user):
        return Browser(app).login(user)

    def test_checkboxes_grouped_by_kind_with_the_defaults(self, browser):
        dataset = factories.Dataset()
        plain = browser.get("/webhooks/new").body
        for legend in ("Everything", "Datasets", "Resources", "Organizations"):
            assert f'<legend class="h6">{legend}</legend>' in plain
        assert _checked(plain) == ["dataset/update"]
        assert 'value="*" id="field-topic" ' in plain  # first: the summary's link
        from_dataset = browser.get(f"/webhooks/new?dataset={dataset['name']}").body
        assert _checked(from_dataset) == ["*"]

    def test_checked_boxes_make_one_webhook_of_several_topics(self, browser, user):
        response = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": ["dataset/create", "resource/create"],
                "custom_topic": "custom/harvest/finished",
                "address": "http://127.0.0.1:9/hook",
            },
        )
        assert "Webhook created." in response.body
        [hook] = helpers.call_action("webhook_list", {"user": user["name"]})
        assert hook["topics"] == [
            "custom/harvest/finished",
            "dataset/create",
            "resource/create",
        ]
        page = browser.get(f"/webhooks/{hook['id']}").body
        for topic in hook["topics"]:
            assert f"<code>{topic}</code>" in page
        listing = browser.get("/webhooks").body
        assert "<code>resource/create</code>" in listing
        edit = browser.get(f"/webhooks/{hook['id']}/edit").body
        assert _checked(edit) == ["dataset/create", "resource/create"]
        assert 'value="custom/harvest/finished"' in edit

    def test_no_topic_checked_is_an_accessible_error(self, browser, user):
        body = browser.submit(
            "/webhooks/new", "/webhooks/new", {"address": "http://127.0.0.1:9/x"}
        ).body
        assert 'href="#field-topic"' in body
        first = body.split('id="field-topic"')[1].split(">")[0]
        assert 'aria-invalid="true"' in first
        assert "field-topic-error" in first
        assert 'id="field-topic-error"' in body
        assert helpers.call_action("webhook_list", {"user": user["name"]}) == []


def _checked(html: str) -> list[str]:
    """The values of the checked topic boxes."""
    boxes = html.split('<input type="checkbox" name="topic" value="')[1:]
    return [box.split('"')[0] for box in boxes if " checked>" in box.split("\n")[0]]
