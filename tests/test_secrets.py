"""Signing secrets: rotation with overlap, no secrets in logs."""

from __future__ import annotations

import base64
import datetime
import logging

import ckan.model as model
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from ckanext.webhooks.model import Webhook
from tests.support.processes import free_port
from tests.support.receivers.recording import Reply


def _signatures(received) -> list[str]:
    return received.headers["webhook-signature"].split()


def _verifies(secret: str, received) -> bool:
    try:
        StandardWebhook(secret).verify(received.body, received.headers)
    except WebhookVerificationError:
        return False
    return True


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestRotation:
    def _hook(self, receiver):
        hook_id = helpers.call_action(
            "webhook_create", topic="dataset/create", address=receiver.url + "/in"
        )
        return hook_id, helpers.call_action("webhook_show", id=hook_id)["secret"]

    def test_both_secrets_sign_during_the_overlap(self, receiver, run_jobs):
        hook_id, old = self._hook(receiver)
        rotated = helpers.call_action("webhook_rotate_secret", id=hook_id)
        new = rotated["secret"]
        assert new != old and new.startswith("whsec_")
        assert old not in repr(rotated)
        expires = datetime.datetime.fromisoformat(rotated["previous_secret_expires"])
        hours = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        hours /= 3600
        assert 23 < hours <= 24

        factories.Dataset()
        run_jobs()

        (got,) = receiver.received
        assert len(_signatures(got)) == 2
        assert all(s.startswith("v1,") for s in _signatures(got))
        assert _verifies(old, got)
        assert _verifies(new, got)

    @pytest.mark.ckan_config("ckanext.webhooks.secret_rotation_hours", 48)
    def test_overlap_follows_the_setting(self, receiver):
        hook_id, _ = self._hook(receiver)
        rotated = helpers.call_action("webhook_rotate_secret", id=hook_id)
        expires = datetime.datetime.fromisoformat(rotated["previous_secret_expires"])
        hours = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
        hours /= 3600
        assert 47 < hours <= 48

    def test_only_the_new_secret_signs_after_the_overlap(self, receiver, run_jobs):
        hook_id, old = self._hook(receiver)
        new = helpers.call_action("webhook_rotate_secret", id=hook_id)["secret"]
        # The overlap has run out.
        hook = model.Session.get(Webhook, hook_id)
        hook.previous_secret_expires = datetime.datetime.utcnow() - datetime.timedelta(
            seconds=1
        )
        model.Session.commit()

        factories.Dataset()
        run_jobs()

        (got,) = receiver.received
        assert len(_signatures(got)) == 1
        assert _verifies(new, got)
        assert not _verifies(old, got)

    def test_rotating_twice_drops_the_oldest(self, receiver, run_jobs):
        hook_id, first = self._hook(receiver)
        second = helpers.call_action("webhook_rotate_secret", id=hook_id)["secret"]
        third = helpers.call_action("webhook_rotate_secret", id=hook_id)["secret"]
        factories.Dataset()
        run_jobs()

        (got,) = receiver.received
        assert len(_signatures(got)) == 2
        assert _verifies(third, got) and _verifies(second, got)
        assert not _verifies(first, got)

    def test_ping_is_signed_with_both_too(self, receiver):
        hook_id, old = self._hook(receiver)
        new = helpers.call_action("webhook_rotate_secret", id=hook_id)["secret"]
        assert helpers.call_action("webhook_test", id=hook_id)["success"]
        (got,) = receiver.received
        assert _verifies(old, got) and _verifies(new, got)

    def test_secrets_are_not_guessable(self, receiver):
        secrets = set()
        hook_id, secret = self._hook(receiver)
        secrets.add(secret)
        for _ in range(5):
            secrets.add(
                helpers.call_action("webhook_rotate_secret", id=hook_id)["secret"]
            )
        assert len(secrets) == 6
        for secret in secrets:
            assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24


@pytest.fixture
def all_logs(caplog):
    """Every record at DEBUG from CKAN and the extension (they do not propagate)."""
    loggers = [logging.getLogger(name) for name in ("ckan", "ckanext", "rq")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(caplog.handler)
        lg.setLevel(logging.DEBUG)
    caplog.set_level(logging.INFO)
    yield caplog
    for lg, level in saved:
        lg.removeHandler(caplog.handler)
        lg.setLevel(level)


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestNothingSecretInLogs:
    def test_full_cycle(self, receiver, run_jobs, all_logs):
        query = "?token=sekrit-query-value"
        user = factories.User()
        context = {"user": user["name"], "ignore_auth": False}
        hook_id = helpers.call_action(
            "webhook_create",
            context=dict(context),
            topic="*",
            address=receiver.url + "/in" + query,
        )
        secret = helpers.call_action("webhook_show", id=hook_id)["secret"]

        factories.Dataset()  # delivered
        run_jobs()
        receiver.script.extend([Reply(status=500), Reply(status=500)])
        factories.Dataset()  # fails, retry scheduled
        run_jobs()
        rotated = helpers.call_action("webhook_rotate_secret", id=hook_id)["secret"]
        helpers.call_action("webhook_test", id=hook_id)  # 500 again

        # A receiver that is down, and a bad address.
        dead = f"http://127.0.0.1:{free_port()}/in{query}"
        helpers.call_action(
            "webhook_update", context=dict(context), id=hook_id, address=dead
        )
        result = helpers.call_action("webhook_test", id=hook_id)
        assert result["success"] is False and query not in result["error"]
        with pytest.raises(tk.ValidationError):
            helpers.call_action(
                "webhook_update",
                context=dict(context),
                id=hook_id,
                address=f"http://user:{secret}@10.0.0.1/{query}",
            )
        helpers.call_action("webhook_delete", context=dict(context), id=hook_id)

        assert receiver.count >= 3
        names = {record.name for record in all_logs.records}
        assert any(name.startswith("ckanext.webhooks.delivery") for name in names), (
            "the check would be empty"
        )
        text = "\n".join(all_logs.handler.format(record) for record in all_logs.records)
        for needle in (secret, rotated, query, secret.removeprefix("whsec_")):
            assert needle not in text

    def test_delivery_log_errors_name_no_address(self, receiver):
        query = "?token=sekrit-query-value"
        hook_id = helpers.call_action(
            "webhook_create",
            topic="*",
            address=f"http://127.0.0.1:{free_port()}/in{query}",
        )
        helpers.call_action("webhook_test", id=hook_id)
        (attempt,) = helpers.call_action("webhook_delivery_list", id=hook_id)
        assert attempt["error"]
        assert "sekrit" not in attempt["error"]
        assert "/in" not in attempt["error"]
