"""The web interface in a real headless Chromium against a live CKAN server.

The test starts ``ckan run`` (with the Solr stand-in from scripts/) on free
ports, logs in as a sysadmin, subscribes to a dataset through the dataset
page's link and the form, changes the dataset through the API, runs a real
``ckan jobs worker --burst`` and sees the delivery in the webhook's log.

Needs Debian's ``chromium`` and the PyPI package ``playwright`` (which drives
that Chromium; Playwright's own browser download is not used), and
``axe-playwright-python``, whose axe-core checks each page's accessibility.
Screenshots of every page go to docs/screenshots/ (or $WEBHOOKS_SCREENSHOTS).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ckan.tests import factories
from ckanapi import RemoteCKAN
from standardwebhooks import Webhook as StandardWebhook

from tests.live import ROOT
from tests.support.receivers.recording import Reply

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("WEBHOOKS_CHROMIUM", "/usr/bin/chromium")
# Without the network switches Chromium keeps trying to reach Google's
# servers, which this sandbox refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"


@pytest.fixture
def screenshots() -> Path:
    folder = Path(os.environ.get("WEBHOOKS_SCREENSHOTS", ROOT / "docs/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def chromium_page(tmp_path: Path):
    # Imported here so that `-m "not browser"` runs without Playwright.
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        # A fresh profile directory for every run.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_subscribe_in_the_browser_and_see_the_delivery(
    live_site, chromium_page, receiver, screenshots
):
    from playwright.sync_api import expect

    admin = factories.Sysadmin(name="demo-admin", password=PASSWORD)
    token = factories.APIToken(user=admin["name"])["token"]
    api = RemoteCKAN(live_site.url, apikey=token)
    api.action.package_create(name="river-levels", title="River levels")
    page = chromium_page

    def shot(name: str) -> None:
        page.wait_for_load_state("networkidle")  # fonts and icons too
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    page.goto(f"{live_site.url}/user/login")
    page.get_by_label("Username or Email").fill(admin["name"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#header-webhooks-link")).to_be_visible()

    page.goto(f"{live_site.url}/dataset/river-levels")
    shot("dataset")
    page.get_by_role("link", name="Get notified of changes").click()
    expect(page.locator("#field-dataset")).to_have_value("river-levels")

    expect(page.locator("#field-topic")).to_be_checked()  # * from a dataset page
    page.uncheck("#field-topic")
    page.check("#field-topic-dataset-update")
    page.fill("#field-address", "ftp://example.com/hook")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.locator(".error-explanation")).to_be_visible()
    expect(page.locator(".error-block")).to_contain_text("http:// or https://")
    shot("form-errors")

    page.fill("#field-address", f"{receiver.url}/ckan-events")
    shot("new")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.locator(".flash-messages")).to_contain_text("Webhook created.")
    secret = page.locator("#webhook-secret").text_content().strip()
    shot("created")
    page.reload()  # post, redirect, get: nothing created twice, no secret
    expect(page.locator("#webhook-secret")).to_have_count(0)
    expect(page.locator("#no-deliveries")).to_be_visible()
    webhook_url = page.url
    assert len(api.action.webhook_list()) == 1

    api.action.package_patch(id="river-levels", notes="Levels rose overnight.")
    live_site.run_worker()

    page.reload()
    entry = page.locator("#delivery-log tr.delivery").first
    expect(entry).to_contain_text("dataset/update")
    expect(entry.locator(".delivery-status")).to_have_text("200")
    shot("webhook")

    assert receiver.wait_for(1)
    got = receiver.received[0]
    assert got.path == "/ckan-events"
    payload = StandardWebhook(secret).verify(got.body, got.headers)
    assert payload["topic"] == "dataset/update"
    assert payload["entity"]["notes"] == "Levels rose overnight."

    page.get_by_role("button", name="Send test ping").click()
    expect(page.locator(".flash-messages")).to_contain_text("Test ping delivered")
    expect(page.locator("#delivery-log tr.delivery").first).to_contain_text(
        "webhook/ping"
    )

    page.locator("#header-webhooks-link").click()
    row = page.locator("#webhook-list tbody tr").first
    expect(row).to_contain_text("dataset/update")
    expect(row).to_contain_text("river-levels")
    expect(row).to_contain_text("200")
    shot("list")

    page.goto(webhook_url)
    page.locator("#delete-webhook").click()
    shot("delete")
    page.get_by_role("button", name="Confirm delete").click()
    expect(page.locator(".flash-messages")).to_contain_text("Webhook deleted.")
    expect(page.locator("#webhook-list")).to_have_count(0)


# What axe-core may find in our templates: nothing serious or critical. The
# theme around them (header, footer) is CKAN's and is not checked here.
SERIOUS = {"serious", "critical"}


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, context={"include": [[".primary"], [".secondary"]]})
    return [
        f"{v['id']}: {v['help']} ({[n['target'] for n in v['nodes']]})"
        for v in results.response["violations"]
        if v["impact"] in SERIOUS
    ]


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.live_config(
    **{
        "ckanext.webhooks.minimum_auth": "none",
        "ckanext.webhooks.max_tests_per_minute": "0",
    }
)
def test_an_anonymous_subscribers_whole_lifecycle(
    live_site, chromium_page, receiver, screenshots
):
    """Create anonymously, reload, copy, come back by the management link,
    edit, see a failing delivery expanded, and page back through the log;
    axe-core checks every page on the way."""
    from playwright.sync_api import expect

    admin = factories.Sysadmin(name="demo-admin", password=PASSWORD)
    token = factories.APIToken(user=admin["name"])["token"]
    api = RemoteCKAN(live_site.url, apikey=token)
    api.action.package_create(name="river-levels", title="River levels")
    receiver.default = Reply(500, body=b"receiver on fire")
    page = chromium_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])

    def check(name: str) -> None:
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
        assert serious_violations(page) == [], name

    page.goto(f"{live_site.url}/webhooks/new?dataset=river-levels")
    expect(page.locator("#field-topic")).to_have_value("*")
    page.fill("#field-address", "ftp://example.com/hook")
    page.get_by_role("button", name="Create webhook").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(page.locator("#field-address")).to_have_attribute("aria-invalid", "true")
    check("anonymous-form-errors")
    summary.get_by_role("link").first.click()
    expect(page.locator("#field-address")).to_be_focused()
    page.fill("#field-address", f"{receiver.url}/anon")
    page.get_by_role("button", name="Create webhook").click()

    secret = page.locator("#webhook-secret").text_content().strip()
    hook_id = page.locator("#webhook-id").text_content().strip()
    expect(page.locator("#webhook-filter")).to_contain_text("river-levels")
    expect(page.locator('a[href$="/webhooks"]')).to_have_count(0)  # no login wall
    page.wait_for_load_state("networkidle")  # CKAN's modules are initialised
    page.get_by_role("button", name="Copy the secret").click()
    expect(page.get_by_role("button", name="Copy the secret")).to_have_attribute(
        "data-copied", "true"
    )
    assert page.evaluate("navigator.clipboard.readText()") == secret
    management = page.locator("#management-link").get_attribute("href")
    check("anonymous-created")

    page.reload()
    expect(page.locator("#webhook-secret")).to_have_count(0)
    expect(page.locator(".flash-messages")).to_contain_text("shown only once")
    assert [w["id"] for w in api.action.webhook_list()] == [hook_id]

    page.goto("about:blank")
    page.goto(management)
    expect(page.locator("h1")).to_contain_text(f"{receiver.url}/anon")
    page.locator("#edit-webhook").click()
    check("edit")
    page.fill("#field-address", f"{receiver.url}/edited")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash-messages")).to_contain_text("Webhook saved.")

    api.action.package_patch(id="river-levels", notes="Levels rose overnight.")
    live_site.run_worker()
    assert receiver.wait_for(1)
    assert receiver.received[-1].path == "/edited"
    StandardWebhook(secret).verify(
        receiver.received[-1].body, receiver.received[-1].headers
    )
    page.reload()
    event = page.locator("#delivery-log tbody.delivery-event").first
    expect(event.locator(".delivery-outcome")).to_contain_text(
        "the receiver answered 500; will retry"
    )
    expect(event.locator(".next-retry")).to_be_visible()
    event.locator("details.attempt summary").first.click()
    expect(event.locator(".attempt-request").first).to_contain_text(
        "webhook-signature: (withheld)"
    )
    expect(event.locator(".attempt-response").first).to_contain_text("500")
    check("delivery-log-expanded")

    anonymous_api = RemoteCKAN(live_site.url)
    for _ in range(25):  # a page of pings pushes the event to the next page
        anonymous_api.action.webhook_test(id=hook_id)
    page.reload()
    expect(page.locator("#delivery-log")).not_to_contain_text("dataset/update")
    page.get_by_role("link", name="Older").click()
    expect(page.locator("#delivery-log")).to_contain_text("dataset/update")
    check("delivery-log-older")
