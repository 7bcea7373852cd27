"""The operator's view: figures, the pause, the admin tab, metrics, the CLI.

Everything runs against the real database, Redis, receivers and job worker;
the metrics are read back with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import email
import json
import socket
import time
from typing import Any

import pytest
from ckan.tests import factories, helpers
from prometheus_client.parser import text_string_to_metric_families

from ckanext.webhooks import control, metrics
from ckanext.webhooks.cli import webhooks as webhooks_cli
from ckanext.webhooks.http import receiver_host
from tests.helpers import count
from tests.support.receivers.recording import Receiver
from tests.test_views import CSRF_TOKEN_VALUE, PASSWORD, Browser


@pytest.fixture(autouse=True)
def _fresh_counters():
    from ckan.lib.redis import connect_to_redis

    connect_to_redis().delete(metrics.counters_key())


@pytest.fixture
def broken():
    with Receiver(500) as r:
        yield r


def subscribe(receiver, topic="dataset/update", path="/hook", user=None):
    context = {"user": user["name"]} if user else {}
    return helpers.call_action(
        "webhook_create", context, topic=topic, address=receiver.url + path
    )


def as_user(user):
    return {"user": user["name"], "ignore_auth": False}


def status():
    return helpers.call_action("webhook_status_show")


def page_text(response, path: str) -> str:
    """A page without its CSRF token (signed with the time, so it differs)
    and its own path (the language menu links to it)."""
    text = CSRF_TOKEN_VALUE.sub(r"\1<token>", response.get_data(as_text=True))
    return text.replace(path, "<path>")


def scrape(families_text: str) -> dict[str, dict[tuple, float]]:
    """Samples by name, then by their labels (sorted pairs)."""
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(families_text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestFigures:
    def test_backlog_outcomes_and_hosts(self, receiver, run_jobs, broken):
        ok = subscribe(receiver, path="/ok")
        failing = subscribe(broken, path="/broken")
        dataset = factories.Dataset()
        helpers.call_action("package_patch", id=dataset["id"], notes="changed")

        before = status()
        assert before["events_waiting"] == 1
        assert before["oldest_waiting_age_seconds"] is not None
        assert before["attempts_last_hour"] == 0
        assert before["success_rate"] is None

        run_jobs()
        after = status()
        assert after["events_waiting"] == 0
        assert after["attempts_last_hour"] == 2
        assert after["successes_last_hour"] == 1
        assert after["success_rate"] == 0.5
        assert after["deliveries_retrying"] == 1  # the failed one, later
        assert after["webhooks_failing"] == 1
        assert [f["id"] for f in after["failing"]] == [failing]
        assert sorted(h["attempts"] for h in after["busiest_hosts"]) == [1, 1]
        assert {h["host"] for h in after["busiest_hosts"]} == {
            receiver_host(receiver.url),
            receiver_host(broken.url),
        }
        assert sum(m["attempts"] for m in after["per_minute"]) == 2
        assert len(after["per_minute"]) == 60
        assert after["worker_seen_at"] is not None
        assert ok not in [f["id"] for f in after["failing"]]

    def test_disabled_webhooks_with_their_reasons(self, receiver):
        owner = factories.User()
        hook = subscribe(receiver, user=owner)
        helpers.call_action("webhook_update", as_user(owner), id=hook, active=False)
        other = subscribe(receiver, user=owner)
        admin = factories.Sysadmin()
        helpers.call_action("webhook_update", as_user(admin), id=other, active=False)
        figures = status()
        assert figures["webhooks_disabled"] == 2
        reasons = {d["id"]: d["disabled_reason"] for d in figures["disabled"]}
        assert reasons == {
            hook: "disabled by its owner",
            other: "disabled by a sysadmin",
        }

    def test_unknown_parameters_are_refused(self):
        with pytest.raises(Exception) as raised:
            helpers.call_action("webhook_status_show", verbose=True)
        assert "verbose" in raised.value.error_dict


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPause:
    def test_nothing_is_sent_while_paused_and_nothing_is_lost(self, receiver, run_jobs):
        subscribe(receiver)
        dataset = factories.Dataset()
        paused = helpers.call_action("webhook_delivery_pause")
        assert paused["paused"] is True
        helpers.call_action("package_patch", id=dataset["id"], notes="one")
        helpers.call_action("package_patch", id=dataset["id"], notes="two")
        run_jobs()
        figures = status()
        assert receiver.received == []
        assert figures["paused"] is True
        assert figures["events_waiting"] == 0  # expanded all the same
        assert figures["deliveries_due"] == 2  # waiting, not lost
        assert count("webhook_attempt") == 0

        resumed = helpers.call_action("webhook_delivery_resume")
        assert resumed["paused"] is False
        run_jobs()
        assert receiver.wait_for(2)
        # Two events, each delivered once (rendered as the dataset is now).
        assert len({b["id"] for b in receiver.bodies()}) == 2
        assert status()["deliveries_due"] == 0

    def test_the_pause_is_kept_in_the_database(self):
        admin = factories.Sysadmin()
        helpers.call_action("webhook_delivery_pause", as_user(admin))
        first = control.paused()
        helpers.call_action("webhook_delivery_pause")  # twice: still one pause
        assert count("webhook_control") == 1
        assert control.paused() == first
        assert first["by"] == admin["name"]

    def test_a_test_ping_is_refused_clearly_while_paused(self, receiver):
        hook = subscribe(receiver)
        helpers.call_action("webhook_delivery_pause")
        with pytest.raises(Exception) as raised:
            helpers.call_action("webhook_test", id=hook)
        assert "paused" in raised.value.error_dict["id"][0]
        assert receiver.received == []

    @pytest.mark.parametrize(
        "action",
        ["webhook_status_show", "webhook_delivery_pause", "webhook_delivery_resume"],
    )
    @pytest.mark.parametrize("who", ["anonymous", "user", "org admin"])
    def test_only_sysadmins(self, action, who):
        import ckan.plugins.toolkit as tk

        if who == "anonymous":
            context = {"user": "", "ignore_auth": False}
        else:
            user = factories.User()
            if who == "org admin":
                factories.Organization(
                    users=[{"name": user["name"], "capacity": "admin"}]
                )
            context = as_user(user)
        with pytest.raises(tk.NotAuthorized):
            helpers.call_action(action, context)
        assert control.paused() is None


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestMetrics:
    def test_prometheus_text_by_sysadmin(self, app, receiver, run_jobs):
        subscribe(receiver, path="/ok")
        with Receiver(410) as gone:
            subscribe(gone, path="/gone")
            helpers.call_action(
                "package_patch", id=factories.Dataset()["id"], notes="changed"
            )
            run_jobs()
        admin = factories.Sysadmin()
        token = factories.APIToken(user=admin["name"])["token"]
        response = app.get("/webhooks/metrics", headers={"Authorization": token})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        samples = scrape(response.get_data(as_text=True))
        attempts = samples["ckan_webhooks_attempts_total"]
        assert attempts[(("outcome", "success"),)] == 1
        assert attempts[(("outcome", "gone"),)] == 1
        assert attempts[(("outcome", "given up"),)] == 0
        buckets = samples["ckan_webhooks_delivery_latency_seconds_bucket"]
        assert buckets[(("le", "+Inf"),)] == 2
        values = [buckets[key] for key in buckets]
        assert values == sorted(values)  # cumulative
        assert samples["ckan_webhooks_delivery_latency_seconds_count"][()] == 2
        assert samples["ckan_webhooks_webhooks_disabled"][()] == 1
        assert samples["ckan_webhooks_events_waiting"][()] == 0
        assert samples["ckan_webhooks_paused"][()] == 0
        assert samples["ckan_webhooks_counters_available"][()] == 1

    def test_counters_outlive_the_delivery_log(self, app, receiver, run_jobs):
        import ckan.model as model
        from sqlalchemy import text

        subscribe(receiver)
        helpers.call_action("package_patch", id=factories.Dataset()["id"], notes="x")
        run_jobs()
        model.Session.execute(text("DELETE FROM webhook_attempt"))  # pruned
        model.Session.commit()
        samples = scrape(metrics.exposition())
        assert samples["ckan_webhooks_attempts_total"][(("outcome", "success"),)] == 1

    @pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 10)
    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_deferrals_are_counted_per_host(self, receiver, run_jobs):
        for n in range(30):
            subscribe(receiver, path=f"/hook-{n}")
        helpers.call_action("package_patch", id=factories.Dataset()["id"], notes="x")
        run_jobs()
        assert receiver.wait_for(30)
        samples = scrape(metrics.exposition())
        held = samples["ckan_webhooks_deferred_total"][
            (("ceiling", "host"), ("host", receiver_host(receiver.url)))
        ]
        assert held >= 30 - 10  # at most one second's worth went at once
        attempts = samples["ckan_webhooks_attempts_total"]
        assert attempts[(("outcome", "success"),)] == 30

    @pytest.mark.ckan_config("ckanext.webhooks.metrics_token", "s3cret-metrics")
    def test_the_metrics_token(self, app):
        good = app.get(
            "/webhooks/metrics", headers={"Authorization": "Bearer s3cret-metrics"}
        )
        assert good.status_code == 200
        assert "ckan_webhooks_paused 0" in good.get_data(as_text=True)
        for header in ("Bearer s3cret-metricS", "Bearer ", "s3cret-metrics"):
            refused = app.get("/webhooks/metrics", headers={"Authorization": header})
            assert refused.status_code == 404

    def test_strangers_get_what_a_missing_page_gets(self, app):
        user = factories.User()
        token = factories.APIToken(user=user["name"])["token"]
        for headers in ({}, {"Authorization": token}):
            missing = app.get("/no-such-page/metrics", headers=headers)
            response = app.get("/webhooks/metrics", headers=headers)
            assert response.status_code == missing.status_code == 404
            assert page_text(response, "/webhooks/metrics") == page_text(
                missing, "/no-such-page/metrics"
            )


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestAdminPage:
    def test_figures_pause_resume_and_disable(self, app, receiver):
        admin = factories.Sysadmin(password=PASSWORD)
        hook = subscribe(receiver)
        import ckan.model as model

        from ckanext.webhooks.model import Webhook

        model.Session.get(Webhook, hook).failure_count = 3
        model.Session.commit()
        browser = Browser(app).login(admin)
        page = browser.get("/ckan-admin/webhooks")
        assert page.status_code == 200
        assert 'id="figure-events-waiting"' in page.body
        assert 'id="failing-webhooks"' in page.body
        assert "/ckan-admin/webhooks" in browser.get("/ckan-admin").body  # the tab

        paused = browser.submit(
            "/ckan-admin/webhooks",
            "/ckan-admin/webhooks/pause",
            {},
            follow_redirects=True,
        )
        assert 'id="paused-notice"' in paused.body
        assert control.paused()["by"] == admin["name"]
        browser.submit(
            "/ckan-admin/webhooks",
            "/ckan-admin/webhooks/resume",
            {},
            follow_redirects=True,
        )
        assert control.paused() is None

        browser.submit(
            "/ckan-admin/webhooks",
            f"/ckan-admin/webhooks/disable/{hook}",
            {},
            follow_redirects=True,
        )
        shown = helpers.call_action("webhook_show", id=hook)
        assert shown["active"] is False
        assert shown["disabled_reason"] == "disabled by a sysadmin"

        other = subscribe(receiver, path="/healthy")  # not failing: by its id
        done = browser.submit(
            "/ckan-admin/webhooks",
            "/ckan-admin/webhooks/disable",
            {"id": other},
            follow_redirects=True,
        )
        assert "Webhook disabled." in done.body
        assert helpers.call_action("webhook_show", id=other)["active"] is False
        wrong = browser.submit(
            "/ckan-admin/webhooks",
            "/ckan-admin/webhooks/disable",
            {"id": "no-such-webhook"},
            follow_redirects=True,
        )
        assert "No webhook has the id no-such-webhook." in wrong.body

    def test_a_post_without_the_csrf_token_is_refused(self, app):
        admin = factories.Sysadmin(password=PASSWORD)
        browser = Browser(app).login(admin)
        response = browser.client.post("/ckan-admin/webhooks/pause", data={})
        assert response.status_code in (400, 403)
        assert control.paused() is None

    def test_non_sysadmins_get_what_a_missing_page_gets(self, app, receiver):
        """404 for GET; for POST the 405 that any unknown URL gets (CKAN's
        static route takes every path, for GET only)."""
        hook = subscribe(receiver)
        user = factories.User(password=PASSWORD)
        browser = Browser(app).login(user)
        missing = browser.get("/ckan-admin/no-such-tab")
        page = browser.get("/ckan-admin/webhooks")
        assert page.status_code == missing.status_code == 404
        assert page_text(page, "/ckan-admin/webhooks") == page_text(
            missing, "/ckan-admin/no-such-tab"
        )
        for path in ("pause", "resume", f"disable/{hook}", "disable"):
            ours, theirs = f"/ckan-admin/webhooks/{path}", f"/ckan-admin/no-such/{path}"
            response = browser.submit("/webhooks", ours, {})
            absent = browser.submit("/webhooks", theirs, {})
            assert response.status_code == absent.status_code
            assert page_text(response, ours) == page_text(absent, theirs)
            assert response.headers.get("Allow") == absent.headers.get("Allow")
        anonymous = app.get("/ckan-admin/webhooks")
        assert anonymous.status_code == 404
        assert page_text(anonymous, "/ckan-admin/webhooks") == page_text(
            app.get("/ckan-admin/no-such-tab"), "/ckan-admin/no-such-tab"
        )
        assert control.paused() is None
        assert helpers.call_action("webhook_show", id=hook)["active"] is True


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestStatusCommand:
    def test_healthy_paused_and_too_old(self, cli, receiver):
        healthy = cli.invoke(webhooks_cli, ["status"])
        assert healthy.exit_code == 0, healthy.output
        assert "events waiting:" in healthy.output

        figures = json.loads(cli.invoke(webhooks_cli, ["status", "--json"]).output)
        assert figures["healthy"] is True
        assert figures["paused"] is False

        subscribe(receiver)
        helpers.call_action("package_patch", id=factories.Dataset()["id"], notes="x")
        old = cli.invoke(webhooks_cli, ["status", "--max-age", "0"])
        assert old.exit_code == 1
        assert cli.invoke(webhooks_cli, ["status", "--max-age", "3600"]).exit_code == 0

        assert cli.invoke(webhooks_cli, ["pause"]).exit_code == 0
        paused = cli.invoke(webhooks_cli, ["status", "--json"])
        assert paused.exit_code == 1
        assert json.loads(paused.output)["problems"][0].startswith("delivery is paused")
        assert cli.invoke(webhooks_cli, ["resume"]).exit_code == 0
        assert cli.invoke(webhooks_cli, ["status"]).exit_code == 0


class Mailbox:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it gets."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.original_content or envelope.content)
        )
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return True
            time.sleep(0.05)
        return len(self.messages) >= count


@pytest.fixture
def mailbox(ckan_config, monkeypatch):
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setitem(ckan_config, "smtp.server", f"127.0.0.1:{port}")
    monkeypatch.setitem(ckan_config, "smtp.mail_from", "ckan@example.org")
    try:
        yield box
    finally:
        controller.stop()


def body_of(message) -> str:
    part = message.get_payload(0) if message.is_multipart() else message
    return part.get_payload(decode=True).decode()


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestOwnerNotices:
    def test_one_digest_per_owner_with_what_and_why(
        self, app, receiver, run_jobs, mailbox
    ):
        from ckanext.webhooks.delivery import dispatch

        owner = factories.User(email="owner@example.org", password=PASSWORD)
        admin = factories.Sysadmin()
        with Receiver(410) as gone_receiver:
            gone = subscribe(gone_receiver, path="/gone", user=owner)
            subscribe(gone_receiver, path="/anonymous")  # nobody to mail
            switched = subscribe(receiver, path="/by-admin", user=owner)
            mine = subscribe(receiver, path="/mine", user=owner)
            helpers.call_action(
                "webhook_update", as_user(admin), id=switched, active=False
            )
            helpers.call_action("webhook_update", as_user(owner), id=mine, active=False)
            helpers.call_action(
                "package_patch", id=factories.Dataset()["id"], notes="x"
            )
            run_jobs()
        assert not helpers.call_action("webhook_show", id=gone)["active"]

        assert dispatch()["notified"] == 1
        assert mailbox.wait_for(1)
        message = mailbox.messages[0]
        assert message["To"].endswith("<owner@example.org>")
        text = body_of(message)
        assert "receiver answered 410 Gone" in text
        assert "disabled by a sysadmin" in text
        assert f"/webhooks/{gone}" in text and f"/webhooks/{switched}" in text
        assert f"/webhooks/{mine}" not in text  # switched off by the owner
        assert "/anonymous" not in text
        assert "re-enable" in text

        assert dispatch()["notified"] == 0  # told already: no second mail
        assert len(mailbox.messages) == 1

        page = Browser(app).login(owner).get("/webhooks")
        assert 'id="disabled-notice"' in page.body
        assert "disabled by a sysadmin" in page.body

    @pytest.mark.ckan_config("ckanext.webhooks.owner_notice_minutes", 0)
    def test_disabled_again_is_told_again(self, receiver, mailbox, cli):
        owner = factories.User(email="owner@example.org")
        admin = factories.Sysadmin()
        hook = subscribe(receiver, user=owner)
        for _ in range(2):
            helpers.call_action("webhook_update", as_user(admin), id=hook, active=False)
            result = cli.invoke(webhooks_cli, ["notify-owners"])
            assert result.output.strip() == "1 notices sent"
            helpers.call_action("webhook_update", as_user(owner), id=hook, active=True)
        assert mailbox.wait_for(2)

    def test_a_mail_that_fails_is_tried_again(self, receiver, ckan_config, monkeypatch):
        from ckanext.webhooks.notices import notify_owners

        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        monkeypatch.setitem(ckan_config, "smtp.server", f"127.0.0.1:{port}")
        owner = factories.User(email="owner@example.org")
        hook = subscribe(receiver, user=owner)
        admin = factories.Sysadmin()
        helpers.call_action("webhook_update", as_user(admin), id=hook, active=False)
        assert notify_owners() == 0
        assert count("webhook WHERE owner_notified_at IS NOT NULL") == 0


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestRedisDown:
    @pytest.mark.ckan_config("ckanext.webhooks.linger_seconds", 0)
    def test_figures_and_delivery_go_on_without_the_counters(
        self,
        private_redis,
        receiver,
    ):
        from ckanext.webhooks.delivery import deliver_pending

        subscribe(receiver)
        private_redis.stop()
        helpers.call_action("package_patch", id=factories.Dataset()["id"], notes="x")
        deliver_pending(budget_seconds=10)  # as a worker would, Redis or not
        assert receiver.wait_for(1)
        samples = scrape(metrics.exposition())
        assert samples["ckan_webhooks_counters_available"][()] == 0
        assert samples["ckan_webhooks_events_waiting"][()] == 0
        assert samples["ckan_webhooks_worker_seen_age_seconds"][()] >= 0
        assert status()["attempts_last_hour"] == 1  # from PostgreSQL
