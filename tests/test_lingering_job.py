"""A delivery job that lingers: woken by LISTEN/NOTIFY, giving way to other jobs.

Speed is measured by ``bench/latency.py``; these tests check the behaviour:
what a lingering job delivers without a new job, and that it ends when
another job waits on its queue.
"""

import threading

import pytest
from ckan.lib import jobs
from ckan.tests import factories, helpers

from ckanext.webhooks import config as cfg
from ckanext.webhooks.delivery import deliver_pending
from ckanext.webhooks.delivery.listener import someone_listens
from tests.support.processes import wait_until


class _Job(threading.Thread):
    """deliver_pending() in a thread, as a worker's work horse would run it."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stats = None

    def run(self):
        self.stats = deliver_pending()


@pytest.mark.usefixtures("with_plugins", "clean_db", "clean_queues")
@pytest.mark.ckan_config("ckanext.webhooks.linger_seconds", 30)
class TestLingeringJob:
    def test_events_after_the_job_started_need_no_new_job(self, receiver):
        helpers.call_action("webhook_create", topic="*", address=receiver.url)
        job = _Job()
        job.start()
        try:
            assert wait_until(someone_listens, timeout=30)
            for n in range(3):
                factories.Dataset(title=f"d{n}")
            assert receiver.wait_for(3)
            # The NOTIFY woke the job; no job was queued for these events.
            assert jobs.get_queue(cfg.queue()).count == 0
            assert job.is_alive()
        finally:
            jobs.enqueue(jobs.test_job, ["make way"], queue=cfg.queue())
            job.join(60)
        assert not job.is_alive()
        assert job.stats["succeeded"] == 3

    def test_it_gives_way_to_another_job(self, receiver):
        helpers.call_action("webhook_create", topic="*", address=receiver.url)
        job = _Job()
        job.start()
        assert wait_until(someone_listens, timeout=30)
        jobs.enqueue(jobs.test_job, ["another job"], queue=cfg.queue())
        job.join(15)  # lingering would last 30 s
        assert not job.is_alive()
        assert not someone_listens()
        # The event of a later change finds no listener: a job is queued.
        factories.Dataset()
        assert jobs.get_queue(cfg.queue()).count == 2

    @pytest.mark.ckan_config("ckanext.webhooks.retry_schedule", "1 1")
    def test_a_retry_falling_due_is_sent_without_the_dispatcher(self, receiver):
        from tests.support.receivers.recording import Reply

        hook_id = helpers.call_action("webhook_create", topic="*", address=receiver.url)
        receiver.script.append(Reply(503))
        job = _Job()
        job.start()
        try:
            assert wait_until(someone_listens, timeout=30)
            factories.Dataset()
            assert receiver.wait_for(2)  # the 503, then the retry a second later
            first, second = receiver.received
            assert first.headers["webhook-id"] == second.headers["webhook-id"]
            assert wait_until(
                lambda: (
                    [
                        entry["status_code"]
                        for entry in helpers.call_action(
                            "webhook_delivery_list", id=hook_id
                        )
                    ]
                    == [200, 503]
                ),
                timeout=30,
            )
        finally:
            jobs.enqueue(jobs.test_job, ["make way"], queue=cfg.queue())
            job.join(60)


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_a_listener_leaves_no_autocommit_connection_in_the_pool():
    """The LISTEN connection is switched to autocommit: handed back to a
    pool like that, a later ORM transaction on it would commit statement by
    statement, and notifications would pile up on it. (CKAN's tests run on
    a NullPool; sites run on SQLAlchemy's default QueuePool, used here.)"""
    import ckan.model as model
    import sqlalchemy as sa

    from ckanext.webhooks.delivery.listener import Listener

    engine = sa.create_engine(model.meta.engine.url)
    try:
        Listener(engine).close()
        idle = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
        for pooled in idle:
            driver = getattr(pooled, "dbapi_connection", None) or pooled.connection
            assert driver.autocommit is False
            pooled.close()
    finally:
        engine.dispose()
