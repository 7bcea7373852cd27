"""The subscriber's pages (issue 20): the delivery log as a debugging tool,
creation that shows the secret once, and the edit page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks import views
from tests import test_views
from tests.support.receivers.recording import Reply
from tests.test_views import create_webhook

# The fixtures of the other page tests: a user, logged in, and a stranger.
user = test_views.user
browser = test_views.browser
anonymous = test_views.anonymous


def log_part(html: str) -> str:
    return html.split('id="delivery-log"')[1].split("</table>")[0]


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDeliveryLogPage:
    def test_an_event_expands_to_the_request_and_the_answer(
        self, browser, user, receiver, run_jobs
    ):
        hook = create_webhook(user, topic="dataset/create", address=receiver.url)
        receiver.script.append(Reply(500))
        factories.Dataset(name="river-levels")
        run_jobs()
        helpers.call_action(
            "webhook_redeliver", id=receiver.received[0].headers["webhook-id"]
        )
        run_jobs()
        html = browser.get(f"/webhooks/{hook}").body
        log = log_part(html)
        assert log.count('<tbody class="delivery-event"') == 1  # one event
        assert log.count('<details class="attempt"') == 2  # two attempts
        assert "webhook-signature: (withheld)" in log
        assert f"webhook-id: {receiver.received[0].headers['webhook-id']}" in log
        assert "river-levels" in log  # the body sent
        secret = helpers.call_action("webhook_show", id=hook)["secret"]
        assert receiver.received[0].headers["webhook-signature"] not in html
        assert log.count(secret) == 0
        # A loopback receiver's answer: only its status is kept.
        assert "Only the status is kept" in log

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "600")
    def test_older_events_stay_reachable_behind_pings_and_the_filter(
        self, browser, user, receiver, run_jobs, monkeypatch
    ):
        monkeypatch.setattr(views, "DELIVERY_LOG_SIZE", 2)
        hook = create_webhook(user, topic="dataset/create", address=receiver.url)
        receiver.script.append(Reply(503))
        factories.Dataset()
        run_jobs()
        event = f'data-event="{receiver.received[0].headers["webhook-id"]}"'
        for _ in range(3):
            helpers.call_action("webhook_test", id=hook)
        first = browser.get(f"/webhooks/{hook}").body
        assert event not in log_part(first)
        assert 'rel="next"' in first
        second = browser.get(f"/webhooks/{hook}?page=2").body  # 2 per page
        assert event in log_part(second)
        assert 'rel="prev"' in second
        assert 'rel="next"' not in second
        failing = browser.get(f"/webhooks/{hook}?outcome=retry+scheduled").body
        assert event in log_part(failing)
        assert "<code>webhook/ping</code>" not in log_part(failing)
        assert "next attempt" in log_part(failing)

    def test_a_stranger_cannot_redeliver_another_webhooks_entry(
        self, browser, user, receiver, run_jobs
    ):
        mine = create_webhook(user, address=receiver.url)
        theirs = create_webhook(factories.User(), address=receiver.url + "/x")
        helpers.call_action("webhook_test", id=theirs)
        (entry,) = helpers.call_action("webhook_delivery_list", id=theirs)
        page = f"/webhooks/{mine}"
        response = browser.submit(page, f"{page}/redeliver", {"attempt": entry["id"]})
        assert response.status_code == 404
        assert receiver.count == 1


def create_in_form(visitor, **fields) -> Any:
    fields.setdefault("topic", "dataset/create")
    fields.setdefault("address", "http://127.0.0.1:9/anon")
    return visitor.submit("/webhooks/new", "/webhooks/new", fields)


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCreatedOnce:
    def test_anonymous_creator_gets_a_summary_with_copy_buttons_and_a_link(
        self, anonymous
    ):
        dataset = factories.Dataset(name="river-levels")
        response = create_in_form(anonymous, dataset=dataset["name"], rate_limit="5")
        body = response.body
        hook_id = re.search(r'id="webhook-id">([^<]+)<', body).group(1)
        summary = body.split('id="webhook-summary"')[1].split("</dl>")[0]
        assert summary.count('data-module="webhooks-copy"') == 3
        assert "river-levels" in summary  # the filter
        assert "at most 5 a minute" in summary
        assert f'href="http://test.ckan.net/webhooks/{hook_id}"' in summary
        # No link leads an anonymous visitor to a login wall.
        assert 'href="/webhooks"' not in body
        assert "/user/login?came_from=%2Fwebhooks" not in body

    def test_the_secret_is_never_on_the_webhooks_page(self, anonymous, app):
        response = create_in_form(anonymous)
        hook_id = re.search(r'id="webhook-id">([^<]+)<', response.body).group(1)
        secret = helpers.call_action("webhook_show", id=hook_id)["secret"]
        page = anonymous.get(f"/webhooks/{hook_id}").body
        assert secret not in page
        assert "Rotate the secret" in page
        # Another visitor holding the id does not get the secret page either.
        other = test_views.Browser(app).get(f"/webhooks/{hook_id}/secret")
        assert secret not in other.body

    def test_a_strangers_secret_page_is_not_found(self, browser):
        theirs = create_webhook(factories.User())
        assert browser.get(f"/webhooks/{theirs}/secret").status_code == 404
        assert browser.get("/webhooks/nothing-here/secret").status_code == 404


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestEditPage:
    def test_edit_keeps_id_secret_and_log(self, browser, user, receiver):
        dataset = factories.Dataset(name="river-levels")
        hook = create_webhook(user, dataset=dataset["id"], rate_limit=5)
        helpers.call_action("webhook_test", id=hook)
        before = helpers.call_action("webhook_show", id=hook)
        page = f"/webhooks/{hook}/edit"
        form = browser.get(page).body
        assert 'value="river-levels"' in form
        assert 'id="address-change-warning"' in form
        response = browser.submit(
            page,
            page,
            {
                "topic": "",
                "custom_topic": "custom/harvest/finished",
                "address": receiver.url + "/new",
                "dataset": "",
                "organization": "",
                "rate_limit": "",
            },
        )
        assert "Webhook saved." in response.body
        assert "consent" in response.body  # the address changed
        after = helpers.call_action("webhook_show", id=hook)
        assert after["secret"] == before["secret"]
        assert (after["topic"], after["address"]) == (
            "custom/harvest/finished",
            receiver.url + "/new",
        )
        assert (after["dataset"], after["rate_limit"]) == (None, None)
        assert len(helpers.call_action("webhook_delivery_list", id=hook)) == 1
        assert 'value="custom/harvest/finished"' in browser.get(page).body

    def test_edit_errors_sit_on_their_fields_and_change_nothing(self, browser, user):
        hook = create_webhook(user)
        before = helpers.call_action("webhook_show", id=hook)
        page = f"/webhooks/{hook}/edit"
        body = browser.submit(
            page,
            page,
            {
                "topic": "dataset/update",
                "custom_topic": "custom/Not OK",
                "address": "",
                "dataset": "no-such-dataset",
            },
        ).body
        custom = body.split('for="field-custom-topic"')[1].split("field-address")[0]
        assert "Unknown topic" in custom
        address = body.split('for="field-address"')[1].split("field-dataset")[0]
        assert "Missing value" in address
        assert helpers.call_action("webhook_show", id=hook) == before

    def test_a_stranger_cannot_edit(self, browser):
        theirs = create_webhook(factories.User())
        page = f"/webhooks/{theirs}/edit"
        assert browser.get(page).status_code == 404
        response = browser.submit(
            "/webhooks/new", page, {"address": "http://127.0.0.1:9/mine"}
        )
        assert response.status_code == 404
        assert helpers.call_action("webhook_show", id=theirs)["address"] != (
            "http://127.0.0.1:9/mine"
        )


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestAccessibleForm:
    def test_errors_are_marked_described_and_linked_from_the_summary(self, browser):
        body = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {"topic": "dataset/update", "address": "ftp://example.com/x"},
        ).body
        summary = body.split('id="error-summary"')[1].split("</div>")[0]
        assert 'data-module="webhooks-error-summary"' in body
        assert '<a href="#field-address">Address:' in summary
        address = re.search(r"<input id=\"field-address\"[^>]*>", body).group(0)
        assert 'aria-invalid="true"' in address
        assert 'aria-describedby="field-address-error field-address-help"' in address
        assert 'id="field-address-error"' in body
        dataset = re.search(r"<input id=\"field-dataset\"[^>]*>", body).group(0)
        assert "aria-invalid" not in dataset
        assert 'data-module="autocomplete"' in dataset
        assert "/api/2/util/dataset/autocomplete?incomplete=?" in dataset

    def test_from_a_dataset_page_every_change_of_it_is_proposed(self, browser):
        factories.Dataset(name="river-levels")
        body = browser.get("/webhooks/new?dataset=river-levels").body
        every = body.split('value="*" id="field-topic"')[1].split(">")[0]
        assert " checked" in every  # the * checkbox
        update = body.split('value="dataset/update"')[1].split(">")[0]
        assert " checked" not in update


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWebhookListSearch:
    def test_search_by_address_and_state(self, browser, user):
        kept = create_webhook(user, address="http://127.0.0.1:9/river_levels")
        create_webhook(user, address="http://127.0.0.1:9/riverXlevels")
        off = create_webhook(user, address="http://127.0.0.1:9/rain")
        helpers.call_action(
            "webhook_update", {"user": user["name"]}, id=off, active=False
        )
        context = {"user": user["name"]}
        found = helpers.call_action("webhook_list", dict(context), q="R_LEVEL")
        assert [w["id"] for w in found] == [kept]  # "_" is no wildcard
        disabled = helpers.call_action("webhook_list", dict(context), active=False)
        assert [w["id"] for w in disabled] == [off]
        body = browser.get("/webhooks?state=disabled").body
        listed = body.split('id="webhook-list"')[1]
        assert "/rain" in listed
        assert "/river" not in listed
        assert "Webhooks 1 to 1 (all of them)" in body

    def test_a_stranger_finds_nothing_of_anothers(self, user):
        create_webhook(factories.User(), address="http://127.0.0.1:9/secret-path")
        found = helpers.call_action(
            "webhook_list", {"user": user["name"], "ignore_auth": False}, q="secret"
        )
        assert found == []


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestOneStoryPerPage:
    def test_a_disabled_webhook_gives_one_count_not_two(self, browser, user):
        import ckan.model as model

        from ckanext.webhooks.model import Webhook

        hook = create_webhook(user)
        row = model.Session.get(Webhook, hook)
        row.active = False
        row.failure_count = 6  # one more failure counted after disabling
        row.disabled_reason = "5 consecutive events could not be delivered"
        model.Session.commit()
        body = browser.get(f"/webhooks/{hook}").body
        assert "5 consecutive events" in body
        assert "6 events in a row" not in body

    def test_every_time_in_the_api_is_iso_8601_with_z(self, user, receiver):
        hook = create_webhook(user, address=receiver.url)
        helpers.call_action("webhook_test", id=hook)
        shown = helpers.call_action("webhook_show", id=hook)
        (entry,) = helpers.call_action("webhook_delivery_list", id=hook)
        (event,) = helpers.call_action("webhook_delivery_list", id=hook, by_event=True)
        times = [shown["created"], shown["last_delivery_at"], entry["created"]]
        times.append(event["last_attempt_at"])
        assert all(
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", t) for t in times
        ), times
