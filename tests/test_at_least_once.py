"""At-least-once delivery under faults, counted event by event (issue 4).

Each test prints ``delivered / expected / duplicates``: expected is one
message per (event, webhook), delivered the distinct ones that arrived,
duplicates the extra copies.
"""

import time

import pytest
from ckan.tests import factories, helpers

from tests.helpers import Site, count, events
from tests.support.processes import free_port
from tests.support.receivers.recording import Receiver, Reply


def report(receiver, expected):
    delivered = receiver.unique_messages()
    duplicates = receiver.count - len(delivered)
    print(
        f"delivered / expected / duplicates: {len(delivered)} / {expected} / "
        f"{duplicates}"
    )
    return delivered, duplicates


def deliver_until(site, receiver, expected, seconds=60):
    deadline = time.monotonic() + seconds
    while len(receiver.unique_messages()) < expected and time.monotonic() < deadline:
        site.dispatch()
        site.work()
        time.sleep(0.3)


def subscribe(receiver, n, topic="dataset/update"):
    return [
        helpers.call_action(
            "webhook_create", topic=topic, address=f"{receiver.url}/h{i}"
        )
        for i in range(n)
    ]


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestNothingLost:
    def test_redis_down_while_datasets_change(self, private_redis, receiver, caplog):
        datasets = [factories.Dataset() for _ in range(10)]
        subscribe(receiver, 3)
        private_redis.stop()
        for dataset in datasets:  # every change commits although Redis is down
            helpers.call_action("package_patch", id=dataset["id"], title="changed")
        assert len(events("dataset/update")) == 10  # each wanted, waiting
        assert "could not wake a worker" in caplog.text
        private_redis.start()  # back, empty: the jobs that were never queued
        site = Site(**{"ckan.redis.url": private_redis.url})
        site.env["CKAN_REDIS_URL"] = private_redis.url
        deliver_until(site, receiver, 30)
        delivered, duplicates = report(receiver, 30)
        assert len(delivered) == 30
        assert duplicates == 0

    def test_worker_killed_mid_batch(self, receiver):
        site = Site(
            **{
                "ckanext.webhooks.timeout": "1",
                "ckanext.webhooks.concurrency": "4",
                "ckanext.webhooks.retry_schedule": "1 1 1",
            }
        )
        receiver.default = Reply(200, delay=0.2)
        datasets = [factories.Dataset() for _ in range(10)]
        subscribe(receiver, 5)
        worker = site.popen("jobs", "worker")
        for dataset in datasets:
            helpers.call_action("package_patch", id=dataset["id"], title="changed")
        assert receiver.wait_for(5, timeout=60)
        site.stop(worker)  # the worker and its work horse, mid-batch
        assert len(receiver.unique_messages()) < 50
        deliver_until(site, receiver, 50, seconds=90)
        delivered, duplicates = report(receiver, 50)
        assert len(delivered) == 50
        # Only what was in flight at the kill may arrive twice.
        assert duplicates <= 2 * 4

    def test_receiver_down_then_back(self):
        site = Site(**{"ckanext.webhooks.retry_schedule": "1 1 1 1 1 1 1 1"})
        port = free_port()  # nothing listens there yet: connections are refused
        datasets = [factories.Dataset() for _ in range(5)]
        for i in range(2):
            helpers.call_action(
                "webhook_create",
                topic="dataset/update",
                address=f"http://127.0.0.1:{port}/h{i}",
            )
        for dataset in datasets:
            helpers.call_action("package_patch", id=dataset["id"], title="changed")
        site.work()
        site.dispatch()
        site.work()
        assert count("webhook_attempt") >= 10  # all failed at least once
        with Receiver(port=port) as receiver:
            deliver_until(site, receiver, 10)
            delivered, duplicates = report(receiver, 10)
        assert len(delivered) == 10
        assert duplicates == 0

    def test_two_workers_share_the_queue_without_duplicates(self, receiver):
        site = Site(**{"ckanext.webhooks.concurrency": "5"})
        receiver.default = Reply(200, delay=0.05)
        datasets = [factories.Dataset() for _ in range(20)]
        subscribe(receiver, 10)
        workers = [site.popen("jobs", "worker") for _ in range(2)]
        try:
            for dataset in datasets:
                helpers.call_action("package_patch", id=dataset["id"], title="x")
            deadline = time.monotonic() + 90
            while receiver.count < 200 and time.monotonic() < deadline:
                site.dispatch()
                time.sleep(0.5)
        finally:
            for worker in workers:
                site.stop(worker)
        delivered, duplicates = report(receiver, 200)
        assert len(delivered) == 200
        assert duplicates == 0
