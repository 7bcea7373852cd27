"""The per-host ceiling: sending slots booked in Redis, deliveries over it wait.

The rate itself, held by two workers together, is measured by
``bench/rate_per_host.py``; these tests check the booking and that nothing
held back is lost.
"""

import itertools

import pytest
from ckan.tests import factories, helpers

from ckanext.webhooks.delivery import deliver_pending
from ckanext.webhooks.delivery.throttle import HORIZON, HostThrottle
from tests.helpers import count


def _host() -> str:
    import secrets

    return f"throttle-test-{secrets.token_hex(4)}.example:8080"


@pytest.mark.usefixtures("with_plugins")
class TestBooking:
    def test_slots_are_spaced_by_the_rate_within_the_horizon(self):
        throttle = HostThrottle(rate=5)
        delays, next_free = throttle.book(_host(), 20)
        assert len(delays) == 5 * HORIZON
        gaps = [b - a for a, b in itertools.pairwise(delays)]
        assert all(gap == pytest.approx(0.2, abs=0.01) for gap in gaps)
        assert delays[0] == pytest.approx(0, abs=0.05)
        assert next_free == pytest.approx(delays[-1] + 0.2, abs=0.05)

    def test_booking_is_shared_by_every_throttle(self):
        """Two workers are two throttles: the second books after the first."""
        host = _host()
        first, _ = HostThrottle(rate=10).book(host, 4)
        second, _ = HostThrottle(rate=10).book(host, 4)
        assert second[0] == pytest.approx(first[-1] + 0.1, abs=0.05)

    def test_hosts_do_not_share_slots(self):
        delays, _ = HostThrottle(rate=2).book(_host(), 1)
        other, _ = HostThrottle(rate=2).book(_host(), 1)
        assert delays[0] == pytest.approx(0, abs=0.05)
        assert other[0] == pytest.approx(0, abs=0.05)

    def test_zero_means_no_limit(self):
        delays, next_free = HostThrottle(rate=0).book(_host(), 500)
        assert delays == [0.0] * 500 and next_free == 0.0


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestHeldDeliveriesWait:
    @pytest.mark.ckan_config("ckanext.webhooks.max_rate_per_host", 10)
    @pytest.mark.ckan_config("ckanext.webhooks.max_webhooks_per_address", 0)
    def test_everything_over_the_rate_is_delivered_later_by_the_same_job(
        self, receiver
    ):
        """30 deliveries at 10 a second: most are held back, none is lost."""
        for n in range(30):
            helpers.call_action(
                "webhook_create", topic="*", address=f"{receiver.url}/h{n}"
            )
        factories.Dataset()
        stats = deliver_pending()
        assert stats["succeeded"] == 30
        assert stats["throttled"] > 0
        assert receiver.wait_for(30)
        assert sorted(r.path for r in receiver.received) == sorted(
            f"/h{n}" for n in range(30)
        )
        assert count("webhook_attempt") == 30  # held back is not an attempt
