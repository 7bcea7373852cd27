"""`ckan webhooks ...` through CKAN's cli fixture."""

import json

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks.cli import webhooks


def run(cli, *args):
    return cli.invoke(webhooks, list(args))


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestCommands:
    def test_create_list_show_delete(self, cli, receiver):
        result = run(cli, "create", "dataset/update", receiver.url)
        assert result.exit_code == 0, result.output
        hook_id = result.output.strip()
        listed = run(cli, "list")
        assert hook_id in listed.output and "dataset/update" in listed.output
        shown = run(cli, "show", hook_id)
        assert json.loads(shown.output)["address"] == receiver.url
        deleted = run(cli, "delete", hook_id)
        assert deleted.exit_code == 0
        assert run(cli, "show", hook_id).exit_code == 1

    def test_create_with_owner_and_filter(self, cli, receiver):
        user = factories.User()
        dataset = factories.Dataset()
        result = run(
            cli,
            "create",
            "dataset/*",
            receiver.url,
            "--user",
            user["name"],
            "--dataset",
            dataset["name"],
        )
        assert result.exit_code == 0, result.output
        hook = helpers.call_action("webhook_show", id=result.output.strip())
        assert hook["owner_id"] == user["id"]
        assert hook["dataset"] == dataset["id"]

    def test_invalid_input_is_a_clear_error(self, cli):
        result = run(cli, "create", "dataset/explode", "ftp://example.com")
        assert result.exit_code == 1
        assert "Unknown topic" in result.output
        assert "address" in result.output

    def test_unknown_id(self, cli):
        for command in ("show", "delete", "test", "deliveries"):
            result = run(cli, command, "no-such-webhook")
            assert result.exit_code == 1, command
            assert "Not found" in result.output

    def test_ping_deliveries_redeliver(self, cli, receiver, run_jobs):
        hook_id = run(cli, "create", "*", receiver.url).output.strip()
        ping = run(cli, "test", hook_id)
        assert ping.exit_code == 0, ping.output
        assert json.loads(ping.output)["status_code"] == 200
        log = run(cli, "deliveries", hook_id)
        assert "webhook/ping" in log.output and "success" in log.output
        entry_id = log.output.split()[0]
        again = run(cli, "redeliver", entry_id)
        assert again.exit_code == 0, again.output
        run_jobs()
        assert receiver.wait_for(2)
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1

    def test_failed_ping_exits_non_zero(self, cli, receiver):
        hook_id = run(cli, "create", "*", receiver.url).output.strip()
        receiver.stop()
        result = run(cli, "test", hook_id)
        assert result.exit_code == 1
        assert json.loads(result.output)["success"] is False

    def test_dispatch_hands_over_waiting_events(self, cli, receiver, run_jobs):
        from ckan.lib.redis import connect_to_redis

        from ckanext.webhooks.delivery import wake_key

        run(cli, "create", "dataset/create", receiver.url)
        factories.Dataset()
        # As if Redis had lost the wake-up: the queue is empty, the event waits.
        from ckan.lib.jobs import get_queue

        get_queue().empty()
        connect_to_redis().delete(wake_key())
        run_jobs()
        assert receiver.count == 0
        result = run(cli, "dispatch")
        assert result.exit_code == 0
        assert "1 events" in result.output and "woken" in result.output
        run_jobs()
        assert receiver.wait_for(1)
        assert "not woken" in run(cli, "dispatch").output

    def test_dispatch_loop_stops_after_its_time(self, cli):
        result = run(cli, "dispatch", "--loop", "--interval", "0.1", "--for", "0.3")
        assert result.exit_code == 0


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_migrations_downgrade_and_upgrade():
    """`ckan db downgrade -p webhooks -v base` removes the tables; upgrade adds them."""
    import ckan.model as model
    from sqlalchemy import inspect

    from tests.helpers import Site

    site = Site()
    tables = {"webhook", "webhook_event", "webhook_delivery", "webhook_attempt"}
    site.ckan("db", "downgrade", "-p", "webhooks", "-v", "base")
    model.Session.remove()
    assert not tables & set(inspect(model.meta.engine).get_table_names())
    site.ckan("db", "upgrade", "-p", "webhooks")
    assert tables <= set(inspect(model.meta.engine).get_table_names())


def test_a_malformed_allowed_hosts_entry_stops_ckan_at_start_up():
    from tests.helpers import Site

    site = Site(**{"ckanext.webhooks.allowed_hosts": "127.0.0.1 10.0.0.0/8:99"})
    result = site.ckan("webhooks", "--help", check=False)
    assert result.returncode != 0
    assert "allowed_hosts entry '10.0.0.0/8:99' is malformed" in result.stderr


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestConsentAndLeaseCommands:
    @pytest.mark.ckan_config("ckanext.webhooks.verification", "anonymous")
    def test_verify_asks_now_and_exits_by_the_answer(self, cli, receiver):
        hook_id = run(cli, "create", "*", receiver.url).output.strip()
        refused = run(cli, "verify", hook_id)
        assert refused.exit_code == 1
        assert "answered 405" in json.loads(refused.output)["error"]
        receiver.consent(rate="90")
        granted = run(cli, "verify", hook_id)
        assert granted.exit_code == 0, granted.output
        assert json.loads(granted.output)["allowed_rate"] == 90
        assert len(receiver.handshakes) == 2 and receiver.received == []

    @pytest.mark.ckan_config("ckanext.webhooks.anonymous_lease_days", "30")
    def test_renew_prints_the_new_expiry(self, cli, receiver):
        hook_id = run(cli, "create", "*", receiver.url).output.strip()
        result = run(cli, "renew", hook_id)
        assert result.exit_code == 0
        expires = helpers.call_action("webhook_show", id=hook_id)["expires"]
        assert result.output.strip() == f"{hook_id} expires {expires}"
        assert run(cli, "renew", "no-such-webhook").exit_code == 1


@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.ckan_config("ckanext.webhooks.max_tests_per_minute", "0")
def test_recover_queues_what_a_webhook_missed(cli, receiver, monkeypatch):
    from ckanext.webhooks.delivery import deliver_pending
    from ckanext.webhooks.logic import action

    factories.Dataset()
    factories.Dataset()  # before the webhook existed
    hook_id = run(cli, "create", "dataset/create", receiver.url).output.strip()
    monkeypatch.setattr(action, "MAX_RECOVER", 1)  # the command pages on
    result = run(cli, "recover", hook_id, "--since", "2020-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"2 events queued for {hook_id}"
    deliver_pending()
    assert receiver.wait_for(2)
    assert run(cli, "recover", hook_id, "--since", "yesterday").exit_code == 1
