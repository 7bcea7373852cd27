"""SIGTERM to a stock worker: the job in its work horse finishes what is in
flight, gives back what it claimed but has not sent, and another worker
takes that over at once, without waiting for a lease to run out.

The lease here is 3 x 30 + 5 = 95 s and the job would linger for 120 s: a
worker that ignored the request would hold both far past the waits below.
"""

import os
import signal

import ckan.model as model
import pytest
from ckan.tests import factories, helpers
from sqlalchemy import text

from tests.helpers import Site
from tests.support.processes import descendants, stop_process, wait_until
from tests.support.receivers.recording import Reply

DATASETS = 6
WEBHOOKS = 2


def deliveries():
    """(status, attempts claimed, attempts logged) of every delivery."""
    rows = model.Session.execute(
        text(
            "SELECT d.status, d.attempts, "
            "(SELECT count(*) FROM webhook_attempt a WHERE a.delivery_id = d.id) "
            "FROM webhook_delivery d"
        )
    ).all()
    model.Session.commit()
    return [tuple(row) for row in rows]


@pytest.mark.usefixtures("with_plugins", "clean_db")
@pytest.mark.parametrize("horse_too", [False, True], ids=["worker", "control-group"])
def test_sigterm_hands_the_rest_to_another_worker(receiver, horse_too):
    """``worker``: ``kill <worker>`` (the horse gets no signal; the job reads
    the worker's stop request from Redis). ``control-group``: every process
    of the worker gets SIGTERM, as systemd's default KillMode sends it."""
    site = Site(
        **{
            "ckanext.webhooks.timeout": "30",
            "ckanext.webhooks.concurrency": "2",
            "ckanext.webhooks.linger_seconds": "120",
        }
    )
    receiver.default = Reply(200, delay=1.0)
    datasets = [factories.Dataset() for _ in range(DATASETS)]
    for i in range(WEBHOOKS):
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=f"{receiver.url}/h{i}"
        )
    for dataset in datasets:  # one wake-up job waits for the first worker
        helpers.call_action("package_patch", id=dataset["id"], title="changed")
    first = site.popen("jobs", "worker")
    second = None
    try:
        assert receiver.wait_for(1, timeout=60)  # the first one is sending
        second = site.popen("jobs", "worker")  # idle: nothing is queued
        for pid in [first.pid, *(descendants(first.pid) if horse_too else [])]:
            os.kill(pid, signal.SIGTERM)
        first.wait(timeout=60)  # in flight finished, the job ended at once
        # What arrived by now, the first worker sent (its in-flight requests
        # end before it exits); the rest is the second worker's.
        sent_by_first = receiver.count
        assert first.returncode == 0, first.stderr.read().decode()[-4000:]
        taken_over = wait_until(
            lambda: all(row[0] == "succeeded" for row in deliveries()), timeout=60
        )
    finally:
        stop_process(first, grace=0)
        if second is not None:
            stop_process(second, grace=0)
    expected = DATASETS * WEBHOOKS
    assert taken_over, f"{receiver.count} of {expected} arrived: {deliveries()}"
    assert len(receiver.unique_messages()) == expected
    assert receiver.count == expected  # exactly once: nothing sent twice
    sent_after = expected - sent_by_first
    assert sent_after  # the second worker sent what the first gave back
    assert 0 < sent_after < expected
    # One claim and one logged attempt each: nothing waited for its lease
    # to run out and was claimed again.
    assert deliveries() == [("succeeded", 1, 1)] * expected
