"""The operator's Webhooks tab in a real headless Chromium against a live site.

A sysadmin opens CKAN's admin area, finds the Webhooks tab, sees the figures
after a real worker delivered, pauses and resumes delivery and disables a
failing webhook; a user who is no sysadmin gets 404. Screenshots go where
tests/test_browser.py puts its own.
"""

from __future__ import annotations

import pytest
from ckan.tests import factories
from ckanapi import RemoteCKAN

from tests.support.receivers.recording import Receiver
from tests.test_browser import PASSWORD, chromium_page, screenshots  # noqa: F401

pytestmark = pytest.mark.browser


def log_in(page, url: str, name: str) -> None:
    page.goto(f"{url}/user/login")
    page.get_by_label("Username or Email").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_load_state()


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_operator_sees_pauses_resumes_and_disables(
    live_site,
    chromium_page,  # noqa: F811
    receiver,
    screenshots,  # noqa: F811
):
    from playwright.sync_api import expect

    admin = factories.Sysadmin(name="ops-admin", password=PASSWORD)
    token = factories.APIToken(user=admin["name"])["token"]
    api = RemoteCKAN(live_site.url, apikey=token)
    api.action.package_create(name="tide-tables", title="Tide tables")
    owner = factories.User()
    owner_api = RemoteCKAN(
        live_site.url, apikey=factories.APIToken(user=owner["name"])["token"]
    )
    page = chromium_page

    with Receiver(500) as broken:
        api.action.webhook_create(topic="dataset/update", address=receiver.url)
        failing = owner_api.action.webhook_create(
            topic="dataset/update", address=f"{broken.url}/broken"
        )
        api.action.package_patch(id="tide-tables", notes="High water at noon.")
        live_site.run_worker()
        assert receiver.wait_for(1)

    log_in(page, live_site.url, admin["name"])
    page.goto(f"{live_site.url}/ckan-admin")
    tabs = page.locator(".page-header .nav-tabs, .content_action, #content")
    tabs.locator("a[href$='/ckan-admin/webhooks']").first.click()
    expect(page.locator("#delivery-figures")).to_be_visible()
    expect(page.locator("#figure-success-rate")).to_contain_text("50.0%")
    expect(page.locator("#figure-worker-seen")).to_contain_text("ago")
    expect(page.locator("#delivery-chart svg rect")).to_have_count(2)
    expect(page.locator("#failing-webhooks")).to_contain_text(broken.url.split("//")[1])
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(screenshots / "operator.png"), full_page=True)

    page.locator("#pause-delivery").click()
    expect(page.locator("#paused-notice")).to_contain_text(admin["name"])
    assert api.action.webhook_status_show()["paused"] is True
    page.screenshot(path=str(screenshots / "operator-paused.png"), full_page=True)
    page.locator("#resume-delivery").click()
    expect(page.locator("#pause-delivery")).to_be_visible()
    assert api.action.webhook_status_show()["paused"] is False

    page.locator("#failing-webhooks").get_by_role("button", name="Disable").click()
    expect(page.locator(".flash-messages")).to_contain_text("Webhook disabled.")
    expect(page.locator("#disabled-webhooks")).to_contain_text("disabled by a sysadmin")
    assert api.action.webhook_show(id=failing)["active"] is False

    stranger = factories.User(name="not-an-operator", password=PASSWORD)
    page.context.clear_cookies()
    log_in(page, live_site.url, stranger["name"])
    response = page.goto(f"{live_site.url}/ckan-admin/webhooks")
    assert response.status == 404
    assert "Pause" not in page.content()
