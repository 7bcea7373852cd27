"""Ceilings per webhook (the receiver's and the owner's) and leases of
anonymous webhooks.

The rate itself, held by two workers together, is measured by
``bench/rate_per_host.py --per webhook``; these tests check which ceiling
applies, that deliveries over it wait and are all delivered, and that
expired webhooks send nothing until renewed.
"""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import ckan.model as model
import pytest
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers
from sqlalchemy import text

from ckanext.webhooks.delivery import deliver_pending, dispatch
from ckanext.webhooks.model import Webhook
from ckanext.webhooks.retention import prune
from ckanext.webhooks.vocabulary import LEASE_REASON
from tests.helpers import count

ANONYMOUS_CALLER = {"user": "", "ignore_auth": False}


def create(**data: Any) -> str:
    return helpers.call_action("webhook_create", context=dict(ANONYMOUS_CALLER), **data)


def show(webhook_id: str) -> dict[str, Any]:
    return helpers.call_action("webhook_show", id=webhook_id)


def age(webhook_id: str, days: float) -> None:
    """Make ``webhook_id`` look created (and renewed) ``days`` ago."""
    then = datetime.datetime.utcnow() - datetime.timedelta(days=days)
    model.Session.execute(
        text("UPDATE webhook SET created = :then, renewed = :then WHERE id = :id"),
        {"then": then, "id": webhook_id},
    )
    model.Session.commit()


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestRateLimitField:
    @pytest.mark.parametrize("bad", [0, -1, "abc", "1.5", 10**7, [1], True])
    def test_a_bad_rate_limit_is_refused_by_name(self, receiver, bad):
        with pytest.raises(tk.ValidationError) as raised:
            create(topic="*", address=receiver.url, rate_limit=bad)
        assert list(raised.value.error_dict) == ["rate_limit"]
        assert count("webhook") == 0

    def test_set_shown_changed_and_cleared(self, receiver):
        hook = create(topic="*", address=receiver.url, rate_limit="30")
        assert show(hook)["rate_limit"] == 30
        for value, expected in ((90, 90), ("", None)):
            updated = helpers.call_action(
                "webhook_update",
                context=dict(ANONYMOUS_CALLER),
                id=hook,
                rate_limit=value,
            )
            assert updated["rate_limit"] == expected

    def test_the_lower_of_the_receivers_and_the_owners_ceilings_applies(self):
        webhook = Webhook(allowed_rate=120, rate_limit=60)
        assert webhook.rate_per_minute == 60
        webhook.rate_limit = 600
        assert webhook.rate_per_minute == 120
        webhook.allowed_rate = None
        assert webhook.rate_per_minute == 600
        webhook.rate_limit = None
        assert webhook.rate_per_minute is None


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestDeliveriesOverTheRateWait:
    @pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
    def test_an_owners_ceiling_spaces_the_deliveries_and_drops_none(self, receiver):
        create(topic="dataset/create", address=receiver.url, rate_limit=60)
        for _ in range(3):
            factories.Dataset()
        stats = deliver_pending()
        assert stats["succeeded"] == 3 and stats["throttled"] > 0
        assert receiver.wait_for(3)
        arrivals = sorted(r.at for r in receiver.received)
        # One a second: slots are booked a second apart (a little jitter).
        assert all(b - a > 0.8 for a, b in itertools.pairwise(arrivals))
        assert count("webhook_attempt") == 3  # waiting is not an attempt

    @pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
    @pytest.mark.ckan_config("ckanext.webhooks.verification", "anonymous")
    def test_a_receivers_negotiated_rate_spaces_the_deliveries(self, receiver):
        receiver.consent(rate="60")
        hook = create(topic="dataset/create", address=receiver.url)
        for _ in range(3):
            factories.Dataset()
        deliver_pending()
        assert show(hook)["allowed_rate"] == 60
        assert receiver.wait_for(3)
        arrivals = sorted(r.at for r in receiver.received)
        assert all(b - a > 0.8 for a, b in itertools.pairwise(arrivals))

    @pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
    def test_other_webhooks_do_not_wait_for_a_slow_ones_turn(self, receiver):
        create(topic="dataset/create", address=f"{receiver.url}/slow", rate_limit=1)
        create(topic="dataset/create", address=f"{receiver.url}/fast")
        for _ in range(3):
            factories.Dataset()
        stats = deliver_pending()
        paths = sorted(r.path for r in receiver.received)
        assert paths == ["/fast", "/fast", "/fast", "/slow"]
        assert stats["throttled"] >= 2
        pending = model.Session.execute(
            text("SELECT count(*) FROM webhook_delivery WHERE status = 'pending'")
        ).scalar()
        model.Session.commit()
        assert pending == 2  # the slow one's, waiting for its minute

    @pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 0)
    def test_a_held_queue_is_spaced_by_the_rate_not_churned(self, receiver):
        """What waits for a slow ceiling falls due one slot apart, so the
        next job does not claim and give back the whole queue each time."""
        create(topic="dataset/create", address=receiver.url, rate_limit=2)
        for _ in range(4):
            factories.Dataset()
        deliver_pending()
        assert len(receiver.received) == 1
        due = [
            row[0]
            for row in model.Session.execute(
                text(
                    "SELECT next_attempt_at FROM webhook_delivery "
                    "WHERE status = 'pending' ORDER BY next_attempt_at"
                )
            )
        ]
        model.Session.commit()
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(due)]
        assert gaps == [pytest.approx(30, abs=0.01)] * 2
        assert deliver_pending()["sent"] == 0  # none due yet: none claimed


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestLeases:
    @pytest.mark.ckan_config("ckanext.webhooks.anonymous_lease_days", "30")
    def test_anonymous_webhooks_expire_owned_ones_never(self, receiver):
        hook = create(topic="*", address=receiver.url)
        shown = show(hook)
        created = datetime.datetime.fromisoformat(shown["created"].rstrip("Z"))
        expires = datetime.datetime.fromisoformat(shown["expires"].rstrip("Z"))
        assert expires - created == datetime.timedelta(days=30)
        owner = factories.User()
        owned = helpers.call_action(
            "webhook_create",
            context={"user": owner["name"], "ignore_auth": False},
            topic="*",
            address=receiver.url,
        )
        assert show(owned)["expires"] is None
        renewed = helpers.call_action(
            "webhook_renew",
            context={"user": owner["name"], "ignore_auth": False},
            id=owned,
        )
        assert renewed["expires"] is None

    def test_no_expiry_by_default(self, receiver):
        assert show(create(topic="*", address=receiver.url))["expires"] is None

    @pytest.mark.ckan_config("ckanext.webhooks.anonymous_lease_days", "30")
    def test_an_expired_webhook_sends_nothing_until_renewed(self, receiver):
        hook = create(topic="dataset/create", address=receiver.url)
        age(hook, 31)
        factories.Dataset()
        deliver_pending()
        assert receiver.received == []  # expired: nothing sent, even before
        shown = show(hook)  # the sweep has disabled it
        assert shown["active"] is False
        assert shown["disabled_reason"] == LEASE_REASON
        renewed = helpers.call_action(
            "webhook_renew", context=dict(ANONYMOUS_CALLER), id=hook
        )
        assert renewed["active"] is True and renewed["disabled_reason"] is None
        expires = datetime.datetime.fromisoformat(renewed["expires"].rstrip("Z"))
        assert expires > datetime.datetime.utcnow() + datetime.timedelta(days=29)
        factories.Dataset()
        deliver_pending()
        assert receiver.wait_for(1)

    @pytest.mark.ckan_config("ckanext.webhooks.anonymous_lease_days", "30")
    @pytest.mark.ckan_config("ckanext.webhooks.delete_disabled_after_days", "7")
    def test_prune_deletes_expired_webhooks_after_the_disabled_period(self, receiver):
        long_gone = create(topic="*", address=f"{receiver.url}/a")
        just_expired = create(topic="*", address=f"{receiver.url}/b")
        alive = create(topic="*", address=f"{receiver.url}/c")
        age(long_gone, 40)  # expired 10 days ago
        age(just_expired, 32)  # expired 2 days ago
        age(alive, 10)
        assert dispatch()["expired"] == 2
        assert prune()["webhooks"] == 1
        remaining = {w.id for w in model.Session.query(Webhook)}
        model.Session.commit()
        assert remaining == {just_expired, alive}

    @pytest.mark.ckan_config("ckanext.webhooks.anonymous_lease_days", "30")
    def test_a_stranger_cannot_renew_an_owned_webhook(self, receiver):
        owner = factories.User()
        hook = helpers.call_action(
            "webhook_create",
            context={"user": owner["name"], "ignore_auth": False},
            topic="*",
            address=receiver.url,
        )
        with pytest.raises(tk.ObjectNotFound):
            helpers.call_action(
                "webhook_renew", context=dict(ANONYMOUS_CALLER), id=hook
            )
