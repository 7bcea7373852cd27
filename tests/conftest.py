from __future__ import annotations

import pytest
from ckan.lib import jobs
from ckan.lib.search import index, query

from tests.live import live_site  # noqa: F401  (a fixture)
from tests.receiver import Receiver


@pytest.fixture(autouse=True)
def _no_solr(monkeypatch):
    """Solr cannot be had here: stub CKAN's search index at its boundary."""
    monkeypatch.setattr(index.PackageSearchIndex, "insert_dict", lambda *a, **k: None)
    monkeypatch.setattr(index.PackageSearchIndex, "update_dict", lambda *a, **k: None)
    monkeypatch.setattr(index.PackageSearchIndex, "remove_dict", lambda *a, **k: None)
    monkeypatch.setattr(query.PackageSearchQuery, "run", _no_hits)


def _no_hits(self, *args, **kwargs):
    self.count, self.results, self.facets, self.raw_response = 0, [], {}, {}
    return {"results": [], "count": 0, "facets": {}}


@pytest.fixture(autouse=True)
def _fresh_wake_flag():
    """A wake-up flag left by an earlier test would hold back this test's job."""
    from ckan.lib.redis import connect_to_redis

    from ckanext.webhooks.delivery import wake_key

    connect_to_redis().delete(wake_key())


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

        jobs.Worker([cfg.queue()]).work(burst=True)

    return run
