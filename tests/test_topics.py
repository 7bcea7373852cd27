"""Topics beyond the action table: wildcards, custom events published through
``webhook_event_publish`` and ``ckanext.webhooks.publish``, and the topics and
payloads of IWebhooks plugins (issue 8)."""

import ckan.plugins as p
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers

import ckanext.webhooks
from ckanext.webhooks.interfaces import IWebhooks


def subscribe(receiver, topic, **filters):
    return helpers.call_action(
        "webhook_create", topic=topic, address=receiver.url, **filters
    )


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWildcards:
    @pytest.mark.parametrize(
        ("subscription", "expected"),
        [
            ("dataset/*", {"dataset/create", "dataset/update"}),
            ("resource/*", {"resource/create"}),
            ("*", {"dataset/create", "dataset/update", "resource/create"}),
        ],
    )
    def test_wildcards(self, receiver, run_jobs, subscription, expected):
        subscribe(receiver, subscription)
        factories.Resource()  # a dataset, then a resource in it
        run_jobs()
        assert {b["topic"] for b in receiver.bodies()} == expected

    def test_topic_list(self):
        listed = helpers.call_action("webhook_topic_list")
        for topic in ("organization/create", "group/delete", "group/*", "custom/*"):
            assert topic in listed


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCustomEvents:
    def test_publish_action(self, receiver, run_jobs):
        hook = subscribe(receiver, "custom/harvest/finished")
        sysadmin = factories.Sysadmin()
        result = helpers.call_action(
            "webhook_event_publish",
            context={"user": sysadmin["name"], "ignore_auth": False},
            topic="custom/harvest/finished",
            data={"source": "city", "datasets": 12},
        )
        assert result["queued"] is True
        run_jobs()
        assert receiver.wait_for(1)
        payload = receiver.bodies()[0]
        assert payload["topic"] == "custom/harvest/finished"
        assert payload["entity"] == {"source": "city", "datasets": 12}
        assert payload["webhook_id"] == hook
        log = helpers.call_action("webhook_delivery_list", id=hook)
        assert log[0]["outcome"] == "success"

    def test_custom_wildcard(self, receiver, run_jobs):
        subscribe(receiver, "custom/*")
        helpers.call_action(
            "webhook_event_publish", topic="custom/anything", data={"a": 1}
        )
        run_jobs()
        assert receiver.wait_for(1)

    def test_only_sysadmins_and_configured_publishers(self):
        user = factories.User()
        context = {"user": user["name"], "ignore_auth": False}
        with pytest.raises(tk.NotAuthorized):
            helpers.call_action(
                "webhook_event_publish",
                context=context,
                topic="custom/x",
                data={},
            )

    def test_configured_publisher(self, ckan_config, monkeypatch):
        user = factories.User()
        monkeypatch.setitem(ckan_config, "ckanext.webhooks.publishers", user["name"])
        result = helpers.call_action(
            "webhook_event_publish",
            context={"user": user["name"], "ignore_auth": False},
            topic="custom/x",
            data={"k": "v"},
        )
        assert result["queued"] is False  # nobody subscribes: nothing to send
        assert result["id"].startswith("evt_")  # but the feed has it

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({"topic": "dataset/create", "data": {}}, "topic"),
            ({"topic": "custom/*", "data": {}}, "topic"),
            ({"topic": "custom/Bad Name", "data": {}}, "topic"),
            ({"topic": "custom/x", "data": [1, 2]}, "data"),
            ({"topic": "custom/x", "data": "not json"}, "data"),
            ({"topic": "custom/x", "data": {"big": "x" * 70000}}, "data"),
            ({"topic": "custom/x", "data": {}, "dataset": "nope"}, "dataset"),
        ],
    )
    def test_bad_publish(self, data, field):
        with pytest.raises(tk.ValidationError) as exc_info:
            helpers.call_action("webhook_event_publish", **data)
        assert field in exc_info.value.error_dict

    def test_private_dataset_event_reaches_only_readers(self, receiver, run_jobs):
        org = factories.Organization()
        dataset = factories.Dataset(owner_org=org["id"], private=True)
        subscribe(receiver, "custom/report")  # anonymous: must not see it
        member = factories.User()
        helpers.call_action(
            "organization_member_create",
            id=org["id"],
            username=member["name"],
            role="member",
        )
        member_hook = helpers.call_action(
            "webhook_create",
            context={"user": member["name"], "ignore_auth": False},
            topic="custom/report",
            address=receiver.url + "/member",
        )
        sysadmin = factories.Sysadmin()
        helpers.call_action(
            "webhook_event_publish",
            context={"user": sysadmin["name"], "ignore_auth": False},
            topic="custom/report",
            data={"rows": 3},
            dataset=dataset["id"],
        )
        run_jobs()
        assert receiver.wait_for(1)
        assert [r.path for r in receiver.received] == ["/member"]
        assert receiver.bodies()[0]["webhook_id"] == member_hook

    def test_python_api_commits_with_the_caller(self, receiver, run_jobs):
        import ckan.model as model

        subscribe(receiver, "custom/nightly")
        ckanext.webhooks.publish("custom/nightly", {"n": 1})
        model.Session.rollback()  # the caller's transaction failed
        ckanext.webhooks.publish("custom/nightly", {"n": 2})
        model.Session.commit()
        run_jobs()
        assert [b["entity"] for b in receiver.bodies()] == [{"n": 2}]


class HarvestPlugin(p.SingletonPlugin):
    p.implements(IWebhooks)

    def webhook_topics(self):
        return ["harvest/finished"]

    def webhook_payload(self, payload, topic, webhook):
        payload["site_name"] = "Example portal"
        assert "secret" not in webhook
        return payload


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestIWebhooks:
    def test_plugin_topics_and_payload(self, receiver, run_jobs, monkeypatch):
        plugin = HarvestPlugin()
        monkeypatch.setattr(
            p, "PluginImplementations", _with_extra(p.PluginImplementations, plugin)
        )
        assert "harvest/finished" in helpers.call_action("webhook_topic_list")
        assert "harvest/*" in helpers.call_action("webhook_topic_list")
        subscribe(receiver, "harvest/finished")
        subscribe(receiver, "dataset/create")
        ckanext.webhooks.publish("harvest/finished", {"source": "x"})
        import ckan.model as model

        model.Session.commit()
        factories.Dataset()
        run_jobs()
        assert receiver.wait_for(2)
        assert {b["site_name"] for b in receiver.bodies()} == {"Example portal"}
        assert {b["topic"] for b in receiver.bodies()} == {
            "harvest/finished",
            "dataset/create",
        }


def _with_extra(original, extra):
    """PluginImplementations that also yields ``extra`` for IWebhooks."""

    def implementations(interface):
        found = list(original(interface))
        if interface is IWebhooks:
            found.append(extra)
        return found

    return implementations
