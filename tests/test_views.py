"""The web interface, through Flask's test client with a real login session.

Forms are posted the way a browser posts them: with the CSRF token read from
the page, so the tests also prove the views reject POSTs without one.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from ckan.tests import factories, helpers

from tests.support.receivers.recording import Reply

PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')
CSRF_TOKEN_VALUE = re.compile(r'(name="_csrf_token" (?:value|content)=")[^"]*')


class Browser:
    """A test client that keeps its cookies and sends forms with their token."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, **kwargs)

    def submit(self, page: str, action: str, data: dict[str, str], **kwargs: Any):
        """Open ``page`` and post ``data`` to ``action`` with the page's token."""
        html = self.get(page).body
        token = CSRF_INPUT.search(html)
        assert token, f"no CSRF token on {page}"
        return self.client.post(
            action, data={"_csrf_token": token.group(1), **data}, **kwargs
        )

    def login(self, user: dict[str, Any]) -> Browser:
        response = self.submit(
            "/user/login", "/user/login", {"login": user["name"], "password": PASSWORD}
        )
        assert response.status_code == 200
        assert "Log out" in response.body
        return self


@pytest.fixture
def user():
    return factories.User(password=PASSWORD)


@pytest.fixture
def sysadmin():
    return factories.Sysadmin(password=PASSWORD)


@pytest.fixture
def browser(app, user):
    return Browser(app).login(user)


@pytest.fixture
def anonymous(app):
    return Browser(app)


def create_webhook(user: dict[str, Any] | None, **data: Any) -> str:
    data.setdefault("topic", "dataset/update")
    data.setdefault("address", "http://127.0.0.1:9/hook")
    context = {"user": user["name"]} if user else {"user": ""}
    return helpers.call_action("webhook_create", context, **data)


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWebhookList:
    def test_anonymous_visitors_are_sent_to_log_in(self, anonymous):
        response = anonymous.get("/webhooks", follow_redirects=False)
        assert response.status_code == 302
        assert "/user/login" in response.headers["Location"]

    def test_lists_own_webhooks_only(self, browser, user):
        mine = create_webhook(user, address="http://127.0.0.1:9/mine")
        create_webhook(factories.User(), address="http://127.0.0.1:9/theirs")
        body = browser.get("/webhooks").body
        assert f"/webhooks/{mine}" in body
        assert "http://127.0.0.1:9/mine" in body
        assert "http://127.0.0.1:9/theirs" not in body
        assert "My webhooks" in body

    def test_shows_topic_filter_state_and_last_status(self, browser, user):
        dataset = factories.Dataset()
        hook = create_webhook(user, topic="resource/*", dataset=dataset["id"])
        helpers.call_action("webhook_update", id=hook, active=False)
        row = browser.get("/webhooks").body.split('id="webhook-list"')[1]
        assert "resource/*" in row
        assert f'href="/dataset/{dataset["name"]}"' in row
        assert "disabled" in row
        assert "not yet" in row

    def test_sysadmins_see_every_webhook_with_its_owner(self, app, sysadmin):
        owner = factories.User()
        create_webhook(owner, address="http://127.0.0.1:9/theirs")
        create_webhook(None, address="http://127.0.0.1:9/nobody")
        body = Browser(app).login(sysadmin).get("/webhooks").body
        assert "All webhooks" in body
        assert "http://127.0.0.1:9/theirs" in body
        assert owner["name"] in body
        assert "http://127.0.0.1:9/nobody" in body
        assert "(anonymous)" in body

    def test_reachable_from_the_account_menu_and_dashboard(self, browser):
        assert 'id="header-webhooks-link"' in browser.get("/dataset/").body
        assert 'href="/webhooks"' in browser.get("/dashboard/datasets").body


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCreateForm:
    def test_offers_every_topic(self, browser):
        body = browser.get("/webhooks/new").body
        for topic in helpers.call_action("webhook_topic_list"):
            assert f'value="{topic}"' in body

    def test_prefills_the_dataset_from_the_query(self, browser):
        body = browser.get("/webhooks/new?dataset=my-data").body
        assert 'name="dataset" value="my-data"' in body

    def test_creates_a_webhook_owned_by_the_user(self, browser, user):
        dataset = factories.Dataset()
        response = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": "dataset/*",
                "address": "http://127.0.0.1:9/hook",
                "dataset": dataset["name"],
                "organization": "",
            },
        )
        assert response.status_code == 200
        assert "Webhook created." in response.body
        [hook] = helpers.call_action("webhook_list", {"user": user["name"]})
        assert hook["topic"] == "dataset/*"
        assert hook["dataset"] == dataset["id"]
        assert hook["organization"] is None
        assert f"/webhooks/{hook['id']}" in response.request.path

    def test_custom_topic_is_typed(self, browser, user):
        response = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": "dataset/update",
                "custom_topic": "custom/harvest/finished",
                "address": "http://127.0.0.1:9/hook",
            },
        )
        assert "Webhook created." in response.body
        [hook] = helpers.call_action("webhook_list", {"user": user["name"]})
        assert hook["topic"] == "custom/harvest/finished"

    def test_bad_custom_topic_is_a_field_error(self, browser, user):
        body = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": "dataset/update",
                "custom_topic": "custom/Not OK",
                "address": "http://127.0.0.1:9/hook",
            },
        ).body
        assert "Unknown topic" in body
        assert 'value="custom/Not OK"' in body
        assert helpers.call_action("webhook_list", {"user": user["name"]}) == []

    def test_shows_field_errors_and_keeps_the_input(self, browser, user):
        response = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {
                "topic": "dataset/update",
                "address": "ftp://example.com/x",
                "dataset": "no-such-dataset",
            },
        )
        body = response.body
        assert "The form contains invalid entries" in body
        address_block = body.split('for="field-address"')[1].split("field-dataset")[0]
        assert "error-block" in address_block
        assert "ftp://example.com/x" in address_block
        assert "Dataset &#39;no-such-dataset&#39; not found" in body
        assert helpers.call_action("webhook_list", {"user": user["name"]}) == []

    def test_requires_a_topic_and_an_address(self, browser):
        body = browser.submit("/webhooks/new", "/webhooks/new", {"topic": ""}).body
        assert body.count("Missing value") >= 2

    def test_rejects_a_post_without_csrf_token(self, browser, user):
        response = browser.client.post(
            "/webhooks/new",
            data={"topic": "dataset/update", "address": "http://127.0.0.1:9/x"},
        )
        assert response.status_code == 400
        assert helpers.call_action("webhook_list", {"user": user["name"]}) == []

    def test_anonymous_visitors_see_id_and_secret_once(self, anonymous):
        response = anonymous.submit(
            "/webhooks/new",
            "/webhooks/new",
            {"topic": "dataset/create", "address": "http://127.0.0.1:9/anon"},
        )
        body = response.body
        assert "Copy the secret now and keep it safe." in body
        hook_id = re.search(r'id="webhook-id">([^<]+)<', body).group(1)
        hook = helpers.call_action("webhook_show", id=hook_id)
        assert hook["owner_id"] is None
        assert f'id="webhook-secret">{hook["secret"]}<' in body
        # Post, redirect, get: a reload creates nothing and shows no secret.
        assert response.request.path == f"/webhooks/{hook_id}/secret"
        again = anonymous.get(response.request.path)
        assert hook["secret"] not in again.body
        assert "shown only once" in again.body
        assert len(helpers.call_action("webhook_list", {"ignore_auth": True})) == 1

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "editor")
    def test_forbidden_below_the_minimum_role(self, anonymous, browser):
        assert anonymous.get("/webhooks/new").status_code == 403
        assert browser.get("/webhooks/new").status_code == 403


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWebhookPage:
    def test_missing_webhook_is_404(self, browser):
        assert browser.get("/webhooks/no-such-id").status_code == 404

    def test_someone_elses_webhook_looks_missing(self, browser):
        theirs = create_webhook(factories.User())
        page = browser.get(f"/webhooks/{theirs}")
        missing = browser.get("/webhooks/no-such-webhook-id")
        assert page.status_code == missing.status_code == 404
        # The CSRF token is signed with the time: two pages a second apart
        # differ in it, whatever they show.
        assert CSRF_TOKEN_VALUE.sub(r"\1T", page.body.replace(theirs, "X")) == (
            CSRF_TOKEN_VALUE.sub(
                r"\1T", missing.body.replace("no-such-webhook-id", "X")
            )
        )
        response = browser.submit(
            "/webhooks/new", f"/webhooks/{theirs}/delete", {"delete": ""}
        )
        assert response.status_code == 404
        assert helpers.call_action("webhook_show", id=theirs)

    def test_delivery_log_shows_status_latency_and_error(
        self, browser, user, receiver, run_jobs
    ):
        receiver.script.append(Reply(503))
        hook = create_webhook(user, topic="dataset/create", address=receiver.url)
        dataset = factories.Dataset()
        run_jobs()
        body = browser.get(f"/webhooks/{hook}").body
        log = body.split('id="delivery-log"')[1]
        assert "dataset/create" in log
        assert ">503<" in log
        assert " ms" in log
        assert "the receiver answered 503; will retry" in log
        assert "next attempt" in log
        assert receiver.bodies()[0]["entity"]["id"] == dataset["id"]

    def test_send_test_ping(self, browser, user, receiver):
        hook = create_webhook(user, address=receiver.url)
        page = f"/webhooks/{hook}"
        response = browser.submit(page, f"{page}/test", {})
        assert "Test ping delivered: the receiver answered 200" in response.body
        log = response.body.split('id="delivery-log"')[1]
        assert "webhook/ping" in log
        assert ">200<" in log
        assert receiver.bodies()[0]["topic"] == "webhook/ping"

    def test_failed_test_ping_says_why(self, browser, user):
        hook = create_webhook(user, address="http://127.0.0.1:9/closed")
        page = f"/webhooks/{hook}"
        response = browser.submit(page, f"{page}/test", {})
        assert "Test ping failed:" in response.body
        outcome = response.body.split('class="delivery-outcome"')[1]
        assert "no response: connection refused" in outcome.split("</td>")[0]

    def test_redeliver_an_attempt(self, browser, user, receiver, run_jobs):
        hook = create_webhook(user, topic="dataset/create", address=receiver.url)
        factories.Dataset()
        run_jobs()
        [first] = helpers.call_action("webhook_delivery_list", id=hook)
        page = f"/webhooks/{hook}"
        response = browser.submit(page, f"{page}/redeliver", {"attempt": first["id"]})
        assert "queued for delivery again" in response.body
        run_jobs()
        attempts = helpers.call_action("webhook_delivery_list", id=hook)
        assert [a["event_id"] for a in attempts] == [first["event_id"]] * 2
        assert receiver.wait_for(2)
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(ids) == 1

    def test_redeliver_refuses_another_webhooks_attempt(
        self, browser, user, receiver, run_jobs
    ):
        other = create_webhook(None, topic="dataset/create", address=receiver.url)
        mine = create_webhook(user)
        factories.Dataset()
        run_jobs()
        [attempt] = helpers.call_action("webhook_delivery_list", id=other)
        page = f"/webhooks/{mine}"
        response = browser.submit(page, f"{page}/redeliver", {"attempt": attempt["id"]})
        assert response.status_code == 404

    def test_disable_and_enable(self, browser, user):
        hook = create_webhook(user)
        page = f"/webhooks/{hook}"
        response = browser.submit(page, f"{page}/active", {"active": "false"})
        assert "Webhook disabled." in response.body
        assert 'id="disabled-notice"' in response.body
        assert not helpers.call_action("webhook_show", id=hook)["active"]
        response = browser.submit(page, f"{page}/active", {"active": "true"})
        assert "Webhook enabled." in response.body
        assert helpers.call_action("webhook_show", id=hook)["active"]

    def test_rotate_secret(self, browser, user):
        hook = create_webhook(user)
        old = helpers.call_action("webhook_show", id=hook)["secret"]
        page = f"/webhooks/{hook}"
        response = browser.submit(page, f"{page}/rotate", {})
        new = helpers.call_action("webhook_show", id=hook)["secret"]
        assert new != old
        assert new in response.body
        assert "New secret issued." in response.body
        assert new not in browser.get(response.request.path).body

    def test_delete_asks_for_confirmation(self, browser, user):
        hook = create_webhook(user)
        page = f"/webhooks/{hook}"
        confirm = browser.get(f"{page}/delete").body
        assert "This cannot be undone." in confirm
        assert helpers.call_action("webhook_show", id=hook)
        kept = browser.submit(f"{page}/delete", f"{page}/delete", {"cancel": ""})
        assert kept.request.path == page
        gone = browser.submit(f"{page}/delete", f"{page}/delete", {"delete": ""})
        assert "Webhook deleted." in gone.body
        assert gone.request.path == "/webhooks"
        assert browser.get(page).status_code == 404

    def test_anonymous_webhooks_are_managed_by_their_id(self, anonymous):
        hook = create_webhook(None)
        page = f"/webhooks/{hook}"
        assert anonymous.get(page).status_code == 200
        response = anonymous.submit(f"{page}/delete", f"{page}/delete", {"delete": ""})
        assert "Webhook deleted." in response.body


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDatasetPage:
    def test_links_to_the_prefilled_form(self, browser):
        dataset = factories.Dataset()
        body = browser.get(f"/dataset/{dataset['name']}").body
        assert "Get notified of changes" in body
        assert f'href="/webhooks/new?dataset={dataset["name"]}"' in body

    @pytest.mark.ckan_config("ckanext.webhooks.minimum_auth", "sysadmin")
    def test_no_link_for_those_who_may_not_create(self, browser):
        dataset = factories.Dataset()
        body = browser.get(f"/dataset/{dataset['name']}").body
        assert "Get notified of changes" not in body


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.ckan_config("ckanext.webhooks.verification", "all")
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestConsentOnThePage:
    def test_the_state_and_verify_now(self, browser, user, receiver):
        hook = create_webhook(user, address=receiver.url, rate_limit=30)
        page = f"/webhooks/{hook}"
        body = browser.get(page).body
        state = body.split('id="webhook-verification"')[1].split("</dd>")[0]
        assert "waiting for consent" in state
        assert 'id="verify-now"' in body
        assert "at most 30 a minute" in body.split('id="webhook-rate"')[1]
        response = browser.submit(page, f"{page}/verify", {}, follow_redirects=True)
        assert "The receiver did not consent: answered 405" in response.body
        receiver.consent(rate="12")
        response = browser.submit(page, f"{page}/verify", {}, follow_redirects=True)
        assert "The receiver consents" in response.body
        state = response.body.split('id="webhook-verification"')[1].split("</dd>")[0]
        assert ">verified<" in state
        assert 'id="verify-now"' not in response.body
        assert "the receiver allows 12 a minute" in response.body
        assert receiver.received == []  # a handshake is no delivery

    @pytest.mark.ckan_config("ckanext.webhooks.anonymous_lease_days", 30)
    def test_an_anonymous_webhook_shows_its_expiry_and_renews(self, anonymous):
        hook = create_webhook(None)
        page = f"/webhooks/{hook}"
        assert 'id="webhook-expires"' in anonymous.get(page).body
        response = anonymous.submit(page, f"{page}/renew", {}, follow_redirects=True)
        assert "Webhook renewed." in response.body

    def test_the_create_form_takes_a_rate_limit(self, browser):
        response = browser.submit(
            "/webhooks/new",
            "/webhooks/new",
            {"topic": "*", "address": "http://127.0.0.1:9/x", "rate_limit": "0"},
        )
        assert "Must be 1 or more deliveries per minute" in response.body
        assert 'id="field-rate-limit"' in response.body


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", 0)
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_recover_since_on_the_page(browser, user, receiver):
    from ckanext.webhooks.delivery import deliver_pending

    factories.Dataset()  # before the webhook existed
    hook = create_webhook(user, topic="dataset/create", address=receiver.url)
    page = f"/webhooks/{hook}"
    assert 'id="recover-form"' in browser.get(page).body
    response = browser.submit(
        page, f"{page}/recover", {"since": "2020-01-01T00:00"}, follow_redirects=True
    )
    assert "1 missed event is queued for delivery again." in response.body
    deliver_pending()
    assert receiver.wait_for(1)
    response = browser.submit(
        page, f"{page}/recover", {"since": "soon"}, follow_redirects=True
    )
    assert "Give the next cursor of a page" in response.body
