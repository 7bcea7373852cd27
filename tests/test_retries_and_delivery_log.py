"""Retries, the delivery log, redelivery, ping and dead endpoints (issue 4)."""

import datetime
import time

import ckan.model as model
import pytest
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks import delivery
from tests.helpers import Site, count
from tests.support.receivers.recording import Reply


def subscribe(receiver, topic="*", path="/hook"):
    hook_id = helpers.call_action(
        "webhook_create", topic=topic, address=receiver.url + path
    )
    return helpers.call_action("webhook_show", id=hook_id)


def show(hook_id):
    return helpers.call_action("webhook_show", id=hook_id)


@pytest.mark.usefixtures("with_plugins", "clean_db", "clean_queues")
class TestRetriesWithTheStockWorker:
    def test_fails_twice_then_succeeds_with_the_same_webhook_id(self, receiver):
        """Real `ckan jobs worker --burst` runs plus `ckan webhooks dispatch`."""
        site = Site(**{"ckanext.webhooks.retry_schedule": "1 2"})
        hook = subscribe(receiver, topic="dataset/create")
        receiver.script += [Reply(500), Reply(503)]
        factories.Dataset()
        deadline = time.monotonic() + 60
        while receiver.count < 3 and time.monotonic() < deadline:
            site.work()
            time.sleep(0.5)
            site.dispatch()
        assert receiver.count == 3
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(ids) == 1
        log = helpers.call_action("webhook_delivery_list", id=hook["id"])
        assert [(e["attempt"], e["status_code"], e["outcome"]) for e in log] == [
            (3, 200, "success"),
            (2, 503, "retry scheduled"),
            (1, 500, "retry scheduled"),
        ]

    def test_worker_and_dispatch_loop_as_services(self, receiver):
        """The production set-up from README: a worker and `dispatch --loop`."""
        site = Site(**{"ckanext.webhooks.retry_schedule": "1 1 1"})
        subscribe(receiver, topic="dataset/update")
        receiver.script += [Reply(502), Reply(502)]
        dataset = factories.Dataset()
        worker = site.popen("jobs", "worker")
        dispatcher = site.popen(
            "webhooks", "dispatch", "--loop", "--interval", "0.5", "--for", "60"
        )
        try:
            helpers.call_action("package_patch", id=dataset["id"], title="x")
            assert receiver.wait_for(3, timeout=45)
        finally:
            for process in (worker, dispatcher):
                site.stop(process)
        assert receiver.received[-1].json["entity"]["title"] == "x"
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1

    def test_stock_worker_and_delayed_jobs(self, receiver):
        """Why dispatch exists: CKAN 2.11's worker runs no RQ scheduler.

        (2.12's worker starts one, but dispatch is still what hands over
        events held back by a Redis outage, so both versions use it.)
        """
        from ckan.lib.jobs import get_queue
        from ckan.lib.redis import connect_to_redis
        from ckan.plugins import toolkit as tk

        site = Site()
        subscribe(receiver, topic="dataset/create")
        factories.Dataset()
        queue = get_queue()
        queue.empty()  # drop the immediate wake-up: only the delayed one is left
        connect_to_redis().delete(delivery.wake_key())
        queue.enqueue_in(datetime.timedelta(seconds=1), delivery.deliver_pending)
        time.sleep(1.5)
        site.work()
        if not tk.check_ckan_version(min_version="2.12"):
            assert receiver.count == 0  # due, but never run
        site.dispatch()  # what the README tells operators to run
        site.work()
        assert receiver.wait_for(1)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestBackoff:
    def _next_attempt(self):
        return model.Session.execute(
            text("SELECT next_attempt_at FROM webhook_delivery")
        ).scalar()

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "100 200")
    def test_schedule_with_jitter(self, receiver, run_jobs):
        subscribe(receiver)
        receiver.script.append(Reply(500))
        factories.Dataset()
        before = datetime.datetime.utcnow()
        run_jobs()
        wait = (self._next_attempt() - before).total_seconds()
        assert 100 <= wait <= 112

    @pytest.mark.parametrize("status", [429, 503])
    def test_retry_after_is_honoured(self, receiver, run_jobs, status):
        subscribe(receiver)
        receiver.script.append(Reply(status, headers={"Retry-After": "3600"}))
        factories.Dataset()
        before = datetime.datetime.utcnow()
        run_jobs()
        wait = (self._next_attempt() - before).total_seconds()
        assert 3590 <= wait <= 3700

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "")
    def test_given_up_after_the_schedule(self, receiver, run_jobs):
        hook = subscribe(receiver)
        receiver.script.append(Reply(500))
        factories.Dataset()
        run_jobs()
        assert self._next_attempt() is None
        log = helpers.call_action("webhook_delivery_list", id=hook["id"])
        assert log[0]["outcome"] == "given up"
        assert show(hook["id"])["failure_count"] == 1


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDeadEndpoints:
    def test_410_disables_at_once(self, receiver, run_jobs):
        hook = subscribe(receiver)
        receiver.script.append(Reply(410))
        factories.Dataset()
        run_jobs()
        shown = show(hook["id"])
        assert shown["active"] is False
        assert "410" in shown["disabled_reason"]
        assert shown["disabled_at"]
        factories.Dataset()
        run_jobs()
        assert receiver.count == 1

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "")
    @pytest.mark.ckan_config("ckanext.webhooks.max_failures", "3")
    def test_disabled_after_max_failures_and_success_resets(self, receiver, run_jobs):
        hook = subscribe(receiver, topic="dataset/create")
        receiver.script += [Reply(500), Reply(500), Reply(200), Reply(500)]
        for _ in range(4):
            factories.Dataset()
            run_jobs()
        assert show(hook["id"])["failure_count"] == 1  # reset by the 200
        receiver.script += [Reply(500), Reply(500)]
        for _ in range(2):
            factories.Dataset()
            run_jobs()
        shown = show(hook["id"])
        assert shown["active"] is False
        assert "3 consecutive" in shown["disabled_reason"]
        helpers.call_action("webhook_update", id=hook["id"], active=True)
        factories.Dataset()
        run_jobs()
        assert receiver.received[-1].headers["webhook-id"]
        assert show(hook["id"])["failure_count"] == 0

    @pytest.mark.ckan_config("ckanext.webhooks.delete_disabled_after_days", "30")
    def test_long_disabled_webhooks_are_pruned(self, cli):
        from ckanext.webhooks.cli import webhooks

        old = subscribe_plain("https://example.com/old")
        recent = subscribe_plain("https://example.com/recent")
        for hook_id, days in ((old, 31), (recent, 1)):
            helpers.call_action("webhook_update", id=hook_id, active=False)
            model.Session.execute(
                text("UPDATE webhook SET disabled_at = :t WHERE id = :id"),
                {
                    "t": datetime.datetime.utcnow() - datetime.timedelta(days=days),
                    "id": hook_id,
                },
            )
        model.Session.commit()
        result = cli.invoke(webhooks, ["prune"])
        assert result.exit_code == 0, result.output
        assert "1 disabled webhooks" in result.output
        show(recent)
        with pytest.raises(helpers.logic.NotFound):
            show(old)


def subscribe_plain(address):
    return helpers.call_action("webhook_create", topic="*", address=address)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestLogRedeliveryPing:
    def test_delivery_log_is_newest_first_and_paged(self, receiver, run_jobs):
        hook = subscribe(receiver)
        for _ in range(3):
            factories.Dataset()
        run_jobs()
        log = helpers.call_action("webhook_delivery_list", id=hook["id"])
        assert len(log) == 3
        assert [int(e["id"]) for e in log] == sorted(
            (int(e["id"]) for e in log), reverse=True
        )
        assert set(log[0]) >= {
            "id",
            "event_id",
            "webhook_id",
            "attempt",
            "created",
            "status_code",
            "error",
            "latency_ms",
            "response",
            "outcome",
        }
        page = helpers.call_action(
            "webhook_delivery_list", id=hook["id"], limit=1, offset=1
        )
        assert page == [log[1]]

    def test_redeliver_by_log_entry_and_by_event(self, receiver, run_jobs):
        hook = subscribe(receiver)
        factories.Dataset()
        run_jobs()
        entry = helpers.call_action("webhook_delivery_list", id=hook["id"])[0]
        result = helpers.call_action(
            "webhook_redeliver", id=entry["id"], webhook_id=hook["id"]
        )
        assert result["queued"] == 1
        run_jobs()
        result = helpers.call_action("webhook_redeliver", id=entry["event_id"])
        run_jobs()
        assert receiver.count == 3
        assert {r.headers["webhook-id"] for r in receiver.received} == {
            entry["event_id"]
        }

    def test_redeliver_unknown(self):
        with pytest.raises(helpers.logic.NotFound):
            helpers.call_action("webhook_redeliver", id="evt_nothing")

    def test_ping(self, receiver):
        hook = subscribe(receiver, topic="dataset/create")
        result = helpers.call_action("webhook_test", id=hook["id"])
        assert result["success"] is True
        assert result["status_code"] == 200
        assert result["latency_ms"] >= 0
        payload = receiver.bodies()[0]
        assert payload["topic"] == "webhook/ping"
        assert payload["webhook_id"] == hook["id"]
        log = helpers.call_action("webhook_delivery_list", id=hook["id"])
        assert log[0]["topic"] == "webhook/ping"

    def test_failed_ping_reports_the_error(self, receiver):
        hook = subscribe(receiver)
        receiver.stop()
        result = helpers.call_action("webhook_test", id=hook["id"])
        assert result["success"] is False
        assert result["error"]
        assert show(hook["id"])["failure_count"] == 0


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestPrune:
    @pytest.mark.ckan_config("ckanext.webhooks.delivery_log_days", "30")
    def test_old_events_and_log_are_pruned(self, receiver, run_jobs, cli):
        from ckanext.webhooks.cli import webhooks

        hook = subscribe(receiver)
        factories.Dataset()
        factories.Dataset()
        run_jobs()
        model.Session.execute(
            text(
                "UPDATE webhook_event SET created = :t WHERE sequence = "
                "(SELECT min(sequence) FROM webhook_event)"
            ),
            {"t": datetime.datetime.utcnow() - datetime.timedelta(days=31)},
        )
        model.Session.execute(
            text(
                "UPDATE webhook_attempt SET created = :t WHERE event_id = "
                "(SELECT id FROM webhook_event ORDER BY sequence LIMIT 1)"
            ),
            {"t": datetime.datetime.utcnow() - datetime.timedelta(days=31)},
        )
        model.Session.commit()
        result = cli.invoke(webhooks, ["prune"])
        assert result.exit_code == 0, result.output
        assert "Pruned 1 events, 1 log entries" in result.output
        assert len(helpers.call_action("webhook_delivery_list", id=hook["id"])) == 1

    @pytest.mark.ckan_config("ckanext.webhooks.delivery_log_days", 30)
    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_batches_prune_everything_old_and_keep_everything_recent(
        self, receiver, run_jobs
    ):
        from ckanext.webhooks.retention import prune

        for n in range(4):
            subscribe(receiver, path=f"/h{n}")
        for _ in range(5):
            factories.Dataset()
        run_jobs()  # 5 events, 20 deliveries, 20 log entries
        old = datetime.datetime.utcnow() - datetime.timedelta(days=31)
        model.Session.execute(
            text(
                "UPDATE webhook_event SET created = :t WHERE sequence IN "
                "(SELECT sequence FROM webhook_event ORDER BY sequence LIMIT 3)"
            ),
            {"t": old},
        )
        model.Session.execute(
            text(
                "UPDATE webhook_attempt SET created = :t WHERE event_id IN "
                "(SELECT id FROM webhook_event WHERE created = :t)"
            ),
            {"t": old},
        )
        model.Session.commit()
        counts = prune(batch_size=5)  # attempts 5 at a time, events 1 at a time
        assert (counts["events"], counts["attempts"]) == (3, 12)
        assert count("webhook_event") == 2
        assert count("webhook_delivery") == 8
        assert count("webhook_attempt") == 8


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_log_ids_of_anonymous_webhooks_need_the_webhook_id(receiver, run_jobs):
    """Log ids are sequential: guessing one must not resend someone's event."""
    hook = subscribe(receiver)
    factories.Dataset()
    run_jobs()
    entry = helpers.call_action("webhook_delivery_list", id=hook["id"])[0]
    anonymous = {"user": "", "ignore_auth": False}
    with pytest.raises(helpers.logic.NotFound):
        helpers.call_action("webhook_redeliver", context=anonymous, id=entry["id"])
    result = helpers.call_action(
        "webhook_redeliver", context=anonymous, id=entry["id"], webhook_id=hook["id"]
    )
    assert result["queued"] == 1
