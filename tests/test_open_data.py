"""Subscriptions shaped for open data: filters by group, tag, resource format
and licence, entering and leaving them, ``resource/data_changed``, the
``changes`` list, and coalesced bursts of updates.

Deliveries go to real receivers on 127.0.0.1; the filters are checked in
every combination through ckanapi against a live ``ckan run`` site and a
stock worker.
"""

from __future__ import annotations

import io
import itertools

import ckanapi
import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks import dataset_state

FIELDS = ("group", "tag", "res_format", "license_id")


def subscribe(receiver, topic="*", path="/hook", **filters):
    return helpers.call_action(
        "webhook_create", topic=topic, address=receiver.url + path, **filters
    )


def received(receiver, topic=None):
    return [
        body for body in receiver.bodies() if topic is None or body["topic"] == topic
    ]


def story(receiver, hook):
    """What webhook ``hook`` was told, in order: (filter, changes)."""
    return [
        (body["filter"], body["changes"])
        for body in sorted(received(receiver), key=lambda b: b["sequence"])
        if body["webhook_id"] == hook
    ]


def _dataset_with(ckan, name, facets, org, group):
    """A dataset with the facets named in ``facets``, and other ones else."""
    return ckan.action.package_create(
        name=name,
        owner_org=org["id"],
        groups=[{"name": group["name"] if "group" in facets else "elsewhere"}],
        tags=[{"name": "bus" if "tag" in facets else "tram"}],
        resources=[
            {
                "url": "https://example.com/data",
                "format": "csv" if "res_format" in facets else "PDF",
            }
        ],
        license_id="cc-by" if "license_id" in facets else "odc-odbl",
    )


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_every_combination_of_filters_through_ckanapi(live_site, receiver):
    """15 webhooks, one per non-empty set of filters, and 16 datasets, one per
    set of facets they have: each webhook gets exactly the datasets that have
    all of its facets (and any of a list's values)."""
    admin = factories.Sysadmin()
    token = factories.APIToken(user=admin["name"])["token"]
    ckan = ckanapi.RemoteCKAN(live_site.url, apikey=token)
    anonymous = ckanapi.RemoteCKAN(live_site.url)
    org = ckan.action.organization_create(name="city")
    transport = ckan.action.group_create(name="transport")
    ckan.action.group_create(name="elsewhere")

    wanted = {"group": "transport", "tag": "bus", "res_format": "CSV"}
    wanted["license_id"] = ["cc-by", "cc-zero"]  # a list matches any value
    hooks = {}
    for size in range(1, 5):
        for fields in itertools.combinations(FIELDS, size):
            hook = anonymous.action.webhook_create(
                topic="dataset/create",
                address=f"{receiver.url}/{'+'.join(fields)}",
                **{field: wanted[field] for field in fields},
            )
            hooks[hook] = set(fields)
    shown = anonymous.action.webhook_show(id=next(iter(hooks)))
    assert shown["group"] == [transport["id"]] and shown["tag"] is None

    datasets = {}
    for size in range(5):
        for facets in itertools.combinations(FIELDS, size):
            name = "has-" + ("-".join(facets) or "none").replace("_", "")
            datasets[_dataset_with(ckan, name, facets, org, transport)["id"]] = set(
                facets
            )
    expected = {
        (hook, dataset)
        for hook, fields in hooks.items()
        for dataset, facets in datasets.items()
        if fields <= facets
    }
    live_site.run_worker()
    assert receiver.wait_for(len(expected), timeout=60)
    got = {(body["webhook_id"], body["entity"]["id"]) for body in receiver.bodies()}
    assert got == expected
    assert len(receiver.received) == len(expected) == 65
    assert {body["filter"] for body in receiver.bodies()} == {"matched"}


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_bad_filters_are_refused_naming_the_field(live_site):
    anonymous = ckanapi.RemoteCKAN(live_site.url)
    base = {"topic": "dataset/*", "address": "https://example.com/hook"}
    for field, value, words in (
        ("group", "no-such-group", "Group 'no-such-group' not found"),
        ("license_id", "my-own-licence", "Licence 'my-own-licence' not found"),
        ("tag", ["bus", 7], "Must be a string or a list of strings"),
        ("res_format", ["csv", " "], "Must not contain empty values"),
        ("tag", ["t"] * 51, "Give at most 50 values"),
    ):
        with pytest.raises(ckanapi.ValidationError) as refused:
            anonymous.action.webhook_create(**base, **{field: value})
        assert any(words in m for m in refused.value.error_dict[field]), field
    with pytest.raises(ckanapi.ValidationError) as refused:
        anonymous.action.webhook_create(
            topic="organization/update", address=base["address"], tag="bus"
        )
    assert "would never fire" in refused.value.error_dict["tag"][0]
    assert anonymous.action.webhook_create(**base, tag=[]) is not None


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestEnteringAndLeaving:
    def test_tags_groups_and_formats(self, receiver, run_jobs):
        org = factories.Organization()
        factories.Group(name="transport")
        dataset = factories.Dataset(
            owner_org=org["id"], resources=[{"url": "https://x.org/a", "format": "PDF"}]
        )
        by_tag = subscribe(receiver, "dataset/update", "/tag", tag="bus")
        by_group = subscribe(receiver, "dataset/update", "/group", group="transport")
        by_format = subscribe(receiver, "dataset/update", "/format", res_format="csv")
        # As a sysadmin: CKAN drops group memberships its caller may not edit.
        admin = {"user": factories.Sysadmin()["name"]}
        patch = dict(context=admin, id=dataset["id"])

        helpers.call_action("package_patch", **patch, tags=[{"name": "bus"}])
        helpers.call_action("package_patch", **patch, notes="Timetables")
        helpers.call_action("package_patch", **patch, tags=[])
        helpers.call_action("package_patch", **patch, notes="Nobody hears this")
        helpers.call_action("package_patch", **patch, groups=[{"name": "transport"}])
        helpers.call_action("package_patch", **patch, groups=[])
        resource = helpers.call_action("package_show", id=dataset["id"])["resources"]
        helpers.call_action(
            "resource_patch", context=admin, id=resource[0]["id"], format="CSV"
        )
        run_jobs()
        assert receiver.wait_for(6)

        assert story(receiver, by_tag) == [
            ("entered", ["tags"]),
            ("matched", ["notes"]),
            ("left", ["tags"]),
        ]
        assert story(receiver, by_group) == [
            ("entered", ["groups"]),
            ("left", ["groups"]),
        ]
        assert story(receiver, by_format) == [("entered", ["resources"])]

    def test_changes_made_outside_package_update(self, receiver, run_jobs):
        """Group memberships added by ``member_create``, a resource deleted
        and extras edited: each is known from the transaction alone."""
        factories.Group(name="transport")
        dataset = factories.Dataset(
            extras=[{"key": "source", "value": "a"}],
            resources=[
                {"url": "https://x.org/a.csv", "format": "csv"},
                {"url": "https://x.org/b.pdf", "format": "PDF"},
            ],
        )
        by_group = subscribe(receiver, "dataset/update", "/group", group="transport")
        by_format = subscribe(receiver, "dataset/update", "/csv", res_format="CSV")
        helpers.call_action(
            "member_create",
            id="transport",
            object=dataset["id"],
            object_type="package",
            capacity="public",
        )
        helpers.call_action(
            "package_patch", id=dataset["id"], extras=[{"key": "source", "value": "b"}]
        )
        helpers.call_action("resource_delete", id=dataset["resources"][0]["id"])
        run_jobs()
        assert receiver.wait_for(5)

        assert story(receiver, by_group) == [
            ("entered", ["groups"]),
            ("matched", ["extras"]),
            ("matched", ["resources"]),
        ]
        assert story(receiver, by_format) == [
            ("matched", ["groups"]),
            ("matched", ["extras"]),
            ("left", ["resources"]),
        ]

    def test_a_dataset_moved_to_another_organization_leaves_the_first(
        self, receiver, run_jobs
    ):
        first, second = factories.Organization(), factories.Organization()
        dataset = factories.Dataset(owner_org=first["id"], tags=[{"name": "bus"}])
        helpers.call_action(
            "webhook_create",
            topic="dataset/update",
            address=receiver.url + "/first",
            organization=first["name"],
            tag="bus",
        )
        helpers.call_action("package_patch", id=dataset["id"], owner_org=second["id"])
        run_jobs()
        assert receiver.wait_for(1)
        (body,) = received(receiver)
        assert body["filter"] == "left" and body["changes"] == ["owner_org"]

    def test_made_private_leaves_with_only_what_the_subscriber_saw(
        self, receiver, run_jobs
    ):
        org = factories.Organization()
        dataset = factories.Dataset(owner_org=org["id"], tags=[{"name": "bus"}])
        stranger = subscribe(receiver, "dataset/update", "/stranger", tag="bus")
        member = factories.User()
        helpers.call_action(
            "organization_member_create",
            id=org["id"],
            username=member["name"],
            role="member",
        )
        insider = helpers.call_action(
            "webhook_create",
            context={"user": member["name"], "ignore_auth": False},
            topic="dataset/update",
            address=receiver.url + "/member",
            tag="bus",
        )
        # Payloads are rendered at send time: a worker runs after each change.
        for change in (
            {"private": True, "title": "Secret title"},
            {"notes": "Still secret"},
            {"private": False},
        ):
            helpers.call_action("package_patch", id=dataset["id"], **change)
            run_jobs()
        assert receiver.wait_for(5)
        to_stranger = [b for b in received(receiver) if b["webhook_id"] == stranger]
        to_stranger.sort(key=lambda b: b["sequence"])
        assert [b["filter"] for b in to_stranger] == ["left", "entered"]
        left = to_stranger[0]["entity"]
        assert left == {"id": dataset["id"], "name": dataset["name"]}
        assert "Secret title" not in str(to_stranger[0])
        assert to_stranger[0]["changes"] == ["private"]  # not that the title did
        assert to_stranger[1]["entity"]["title"] == "Secret title"
        to_member = [b for b in received(receiver) if b["webhook_id"] == insider]
        assert [b["filter"] for b in to_member] == ["matched"] * 3

    def test_without_open_data_filters_private_stays_silent(self, receiver, run_jobs):
        org = factories.Organization()
        dataset = factories.Dataset(owner_org=org["id"])
        subscribe(receiver, "dataset/update")
        helpers.call_action("package_patch", id=dataset["id"], private=True)
        run_jobs()
        helpers.call_action("package_patch", id=dataset["id"], private=False)
        run_jobs()
        assert receiver.wait_for(1)
        (body,) = received(receiver)
        assert body["filter"] == "matched" and body["changes"] == ["private"]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDataChanged:
    def test_url_hash_and_upload_but_not_metadata(self, receiver, run_jobs):
        dataset = factories.Dataset(
            resources=[{"url": "https://x.org/a.csv", "format": "CSV"}]
        )
        resource_id = dataset["resources"][0]["id"]
        subscribe(receiver, "resource/*")
        patch = dict(id=resource_id)
        helpers.call_action("resource_patch", **patch, name="Renamed")
        helpers.call_action("resource_patch", **patch, description="About it")
        helpers.call_action("resource_patch", **patch, url="https://x.org/b.csv")
        helpers.call_action("resource_patch", **patch, hash="sha256:ab12")
        run_jobs()
        assert receiver.wait_for(6)
        changed = received(receiver, "resource/data_changed")
        assert sorted(b["changes"] for b in changed) == [["hash"], ["url"]]
        updates = received(receiver, "resource/update")
        assert sorted(b["changes"] for b in updates) == [
            ["description"],
            ["hash"],
            ["name"],
            ["url"],
        ]
        assert all(b["entity"]["id"] == resource_id for b in changed)

    def test_an_upload_is_a_data_change(self, receiver, run_jobs, tmp_path):
        from werkzeug.datastructures import FileStorage

        dataset = factories.Dataset()
        resource = helpers.call_action(
            "resource_create",
            package_id=dataset["id"],
            url="https://x.org/first.csv",
            format="CSV",
        )
        subscribe(receiver, "resource/data_changed")
        upload = FileStorage(io.BytesIO(b"a,b\n1,2\n"), "data.csv")
        helpers.call_action(
            "resource_patch", id=resource["id"], upload=upload, url="data.csv"
        )
        run_jobs()
        assert receiver.wait_for(1)
        (body,) = received(receiver)
        assert {"url", "url_type"} <= set(body["changes"])

    def test_wildcards_and_the_topic_list_include_it(self):
        assert "resource/data_changed" in helpers.call_action("webhook_topic_list")
        assert {"url", "hash", "size", "last_modified"} <= dataset_state.DATA_FIELDS


@pytest.mark.ckan_config("ckanext.webhooks.coalesce_seconds", "1")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCoalescing:
    def test_updates_merge_but_creates_and_deletes_keep_their_place(
        self, receiver, run_jobs
    ):
        subscribe(receiver, "dataset/*")
        by_tag = subscribe(receiver, "dataset/update", "/tag", tag="bus")
        first = factories.Dataset()  # a create
        # The first update brings it into the tag's set: merged, still "entered".
        helpers.call_action(
            "package_patch", id=first["id"], notes="v0", tags=[{"name": "bus"}]
        )
        for n in range(1, 3):
            helpers.call_action("package_patch", id=first["id"], notes=f"v{n}")
        helpers.call_action("package_patch", id=first["id"], title="Last title")
        helpers.call_action("package_delete", id=first["id"])
        second = factories.Dataset()
        helpers.call_action("package_patch", id=second["id"], notes="one")
        helpers.call_action("package_patch", id=second["id"], version="2")
        run_jobs()
        assert receiver.wait_for(6, timeout=30)
        (tagged,) = [b for b in received(receiver) if b["webhook_id"] == by_tag]
        assert tagged["filter"] == "entered" and tagged["coalesced"] == 4
        bodies = sorted(
            (b for b in received(receiver) if b["webhook_id"] != by_tag),
            key=lambda b: b["sequence"],
        )
        about_first = [b for b in bodies if b["entity"]["id"] == first["id"]]
        assert [b["topic"] for b in about_first] == [
            "dataset/create",
            "dataset/update",
            "dataset/delete",
        ]
        update = about_first[1]
        assert update["coalesced"] == 4
        assert update["changes"] == ["notes", "tags", "title"]
        update_of_second = [
            b for b in bodies if b["entity"]["id"] == second["id"] and "coalesced" in b
        ]
        assert len(update_of_second) == 1
        assert update_of_second[0]["coalesced"] == 2
        assert update_of_second[0]["changes"] == ["notes", "version"]
        assert update_of_second[0]["entity"]["version"] == "2"  # the latest state
        assert len(bodies) == 5


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestFormAndCli:
    def test_the_form_takes_filters_separated_by_commas(self, app):
        from tests.test_views import PASSWORD, Browser

        user = factories.User(password=PASSWORD)
        factories.Group(name="transport")
        browser = Browser(app).login(user)
        form = {"topic": "dataset/*", "address": "https://example.com/hook"}
        refused = browser.submit(
            "/webhooks/new", "/webhooks/new", {**form, "group": "transport, nowhere"}
        )
        assert "Group &#39;nowhere&#39; not found" in refused.body
        assert 'id="field-group"' in refused.body
        created = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {**form, "group": "transport", "tag": "bus, tram", "res_format": "csv"},
            follow_redirects=True,
        )
        assert "Tags: bus, tram" in created.body
        assert "Groups: transport" in created.body
        (hook,) = helpers.call_action("webhook_list", context={"user": user["name"]})
        assert hook["tag"] == ["bus", "tram"] and hook["res_format"] == ["CSV"]

    def test_cli_create_with_filters(self, cli):
        from ckanext.webhooks.cli import webhooks

        result = cli.invoke(
            webhooks,
            ["create", "dataset/update", "https://example.com/hook", "--tag", "bus",
             "--tag", "tram", "--license-id", "cc-by", "--res-format", "csv"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        shown = helpers.call_action("webhook_show", id=result.output.strip())
        assert shown["tag"] == ["bus", "tram"]
        assert shown["license_id"] == ["cc-by"] and shown["res_format"] == ["CSV"]
        bad = cli.invoke(
            webhooks, ["create", "*", "https://example.com/x", "--group", "nowhere"]
        )
        assert bad.exit_code == 1 and "nowhere" in bad.output


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_site_wide_filters_are_found_by_an_index_of_their_first_filter(receiver):
    """A change is checked against the site-wide webhooks whose first filter
    asks for one of the dataset's values, found by a GIN index; the rest of
    each webhook's filters must then match on the same side of the change."""
    import json
    import re

    import ckan.model as model
    from sqlalchemy import text

    from ckanext.webhooks.matching import matching_webhooks_sql

    # Index entries of earlier tests' webhooks would count in the plan.
    engine = model.meta.engine.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("VACUUM webhook"))
    group = factories.Group()
    hooks = {
        name: subscribe(receiver, "dataset/update", f"/{name}", **filters)
        for name, filters in {
            "tag": {"tag": "bus"},
            "group_and_tag": {"group": group["name"], "tag": "bus"},
            "group": {"group": group["name"]},
            "format": {"res_format": "csv"},
            "licence": {"license_id": "cc-by"},
            "other_tag": {"tag": "tram"},
            "other_licence": {"license_id": "odc-odbl", "tag": "bus"},
        }.items()
    }
    unfiltered = subscribe(receiver, "dataset/update", "/all")
    for n in range(10):  # others that must not even be read
        subscribe(receiver, "dataset/update", f"/noise{n}", tag=f"noise{n}")

    def facets(**values):
        return json.dumps(
            {"org": None, "groups": [], "tags": [], "formats": [], **values}
        )

    query = matching_webhooks_sql(
        topics="ARRAY['dataset/update', 'dataset/*', '*']",
        package_id="CAST(NULL AS text)",
        previous_package_id="CAST(NULL AS text)",
        organization_id="CAST(NULL AS text)",
        previous_organization_id="CAST(NULL AS text)",
        before="CAST(:before AS jsonb)",
        after="CAST(:after AS jsonb)",
    )
    binds = {
        # Tagged "bus" before; in the group, with a CSV file and CC-BY after.
        "before": facets(tags=["bus"], license_id="odc-by"),
        "after": facets(groups=[group["id"]], formats=["CSV"], license_id="cc-by"),
    }
    found = dict(model.Session.execute(text(query), binds).fetchall())
    assert found == {
        hooks["tag"]: "left",
        hooks["group"]: "entered",
        hooks["format"]: "entered",
        hooks["licence"]: "entered",
        unfiltered: "matched",
    }
    # Events without a dataset have no facets: only unfiltered webhooks.
    none = {"before": None, "after": None}
    assert [row[0] for row in model.Session.execute(text(query), none)] == [unfiltered]

    model.Session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(
        row[0]
        for row in model.Session.execute(
            text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + query), binds
        )
    )
    model.Session.rollback()
    # The index gives only the webhooks whose first filter asks for one of
    # the dataset's values: six of the seventeen with filters (not "tram",
    # nor the ten "noise" tags).
    scans = r"ix_webhook_follows_site_filtered \(actual rows=(\d+)"
    assert re.findall(scans, plan) == ["6"], plan
