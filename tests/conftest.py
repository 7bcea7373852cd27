from __future__ import annotations

import pytest
from ckan.lib import jobs

from tests.live import live_site  # noqa: F401  (a fixture)
from tests.support.receivers.recording import Receiver
from tests.support.redis_server import private_redis  # noqa: F401  (a fixture)
from tests.support.solr import stub_search_index


@pytest.fixture(autouse=True)
def _no_solr(monkeypatch):
    """Solr cannot be had here: stub CKAN's search index at its boundary."""
    stub_search_index(monkeypatch.setattr)


@pytest.fixture(autouse=True)
def _fresh_wake_flag():
    """A wake-up flag left by an earlier test would hold back this test's job,
    and so would the mark of a lingering job that the earlier test killed
    (it lasts two seconds); a job left on the delivery queue would make it
    give way."""
    from ckan.lib import jobs
    from ckan.lib.redis import connect_to_redis
    from ckan.plugins import toolkit as tk

    from ckanext.webhooks.delivery import listener, wake_key, waker

    # An earlier test's commits may still be waking workers from the
    # thread of this process (as a web process does): let it finish first.
    assert waker.flush(), "the waker thread is stuck"
    connect_to_redis().delete(wake_key(), listener.mark_key())
    # Read raw: this runs before the plugin (and its declaration) is loaded.
    jobs.get_queue(tk.config.get("ckanext.webhooks.queue") or "default").empty()


@pytest.fixture
def clean_db(reset_db, migrate_db_for):
    reset_db()
    migrate_db_for("webhooks")


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def run_jobs(with_test_worker, clean_queues):
    """Run every queued job in this process, like `ckan jobs worker --burst`."""

    def run():
        from ckanext.webhooks import config as cfg
        from ckanext.webhooks.delivery import waker

        # Requests of the test app wake workers from a thread of this
        # process: their jobs are queued once it is done.
        assert waker.flush(), "the waker thread is stuck"
        jobs.Worker([cfg.queue()]).work(burst=True)

    return run
