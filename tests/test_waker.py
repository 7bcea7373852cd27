"""Workers are woken from a thread of the web process, not in the request.

A request that saved a change some webhook wants only notes that workers
must be woken; a thread of the process then does it (a Redis round trip),
so a slow or hung Redis never holds the request. CLI commands, jobs and
request contexts that no web server dispatched wake workers at once.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import types

import ckan.lib.redis
import pytest
from ckan.lib import jobs
from ckan.tests import factories, helpers
from redis import ConnectionPool

from ckanext.webhooks import config as cfg
from ckanext.webhooks.delivery import queue, waker
from tests.helpers import events


class HungRedis:
    """Accepts connections and answers nothing until ``release``."""

    def __init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/0"
        self.accepted = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        self.accepted.set()
        self._released.wait(60)
        connection.close()  # the client's read fails: Redis "went away"

    def release(self) -> None:
        self._released.set()
        self._thread.join(10)
        self._server.close()


@pytest.fixture
def wakes(monkeypatch):
    """The name of the thread of each wake-up, in order."""
    threads: list[str] = []
    wake_workers = queue.wake_workers

    def noted() -> bool:
        threads.append(threading.current_thread().name)
        return wake_workers()

    monkeypatch.setattr(queue, "wake_workers", noted)
    return threads


def queued() -> int:
    return len(jobs.get_queue(cfg.queue()).jobs)


def patch_through_the_web(app, dataset, **fields):
    token = factories.SysadminWithToken()["token"]
    response = app.post(
        "/api/3/action/package_patch",
        json={"id": dataset["id"], **fields},
        headers={"Authorization": token},
    )
    assert response.status_code == 200, response.body


@pytest.mark.usefixtures("with_plugins", "clean_db")
class TestWaker:
    def test_a_request_is_not_held_by_a_hung_redis(
        self, app, receiver, monkeypatch, caplog
    ):
        dataset = factories.Dataset()
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        hung = HungRedis()
        monkeypatch.setattr(
            ckan.lib.redis, "_connection_pool", ConnectionPool.from_url(hung.url)
        )
        try:
            # The request completes while Redis holds the waker's connection.
            patch_through_the_web(app, dataset, notes="saved")
            assert hung.accepted.wait(10), "the waker never called Redis"
            assert not waker.flush(0.2), "the wake-up should still hang"
        finally:
            hung.release()
        with caplog.at_level(logging.WARNING):
            assert waker.flush(10)
        assert "could not wake a worker" in caplog.text
        # The event waits in the database for `ckan webhooks dispatch`.
        assert events("dataset/update") == [("dataset/update", dataset["id"])]

    def test_a_served_request_wakes_from_the_thread_once_committed(
        self, app, receiver, wakes, run_jobs
    ):
        dataset = factories.Dataset()
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        patch_through_the_web(app, dataset, notes="saved")
        assert waker.flush()
        assert wakes == ["webhooks-waker"]
        assert queued() == 1
        run_jobs()
        assert receiver.wait_for(1)
        assert receiver.bodies()[0]["entity"]["notes"] == "saved"

    def test_a_burst_of_saves_wakes_once_after_the_rest(
        self, app, receiver, wakes, run_jobs, monkeypatch
    ):
        # A harvest or a bulk edit: the thread wakes workers at once, rests,
        # then wakes once for every save made while it rested.
        monkeypatch.setattr(waker, "_REST_SECONDS", 2.0)
        dataset = factories.Dataset()
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        for n in range(5):
            patch_through_the_web(app, dataset, notes=f"save {n}")
        assert waker.flush()
        assert 1 <= len(wakes) <= 2
        assert set(wakes) == {"webhooks-waker"}
        run_jobs()
        assert receiver.wait_for(5)
        assert len({body["id"] for body in receiver.bodies()}) == 5

    @pytest.mark.ckan_config("ckanext.webhooks.wake_in_background", "false")
    def test_switched_off_the_request_wakes_after_its_commit(
        self, app, receiver, wakes
    ):
        dataset = factories.Dataset()
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        patch_through_the_web(app, dataset, notes="saved")
        assert wakes == ["MainThread"]
        assert queued() == 1  # before any flush

    def test_under_uwsgi_without_threads_the_request_wakes(
        self, app, receiver, wakes, monkeypatch
    ):
        dataset = factories.Dataset()
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        uwsgi = types.SimpleNamespace(opt={"master": True})
        monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
        patch_through_the_web(app, dataset, notes="first")
        assert wakes == ["MainThread"]
        uwsgi.opt["enable-threads"] = True
        patch_through_the_web(app, dataset, notes="second")
        assert waker.flush()
        assert wakes == ["MainThread", "webhooks-waker"]

    def test_a_request_context_nobody_served_wakes_at_once(
        self, receiver, wakes, test_request_context
    ):
        # As a CLI command or a job that pushes a request context of its own.
        dataset = factories.Dataset()
        helpers.call_action(
            "webhook_create", topic="dataset/update", address=receiver.url
        )
        with test_request_context():
            helpers.call_action("package_patch", id=dataset["id"], notes="saved")
        assert wakes == ["MainThread"]
        assert queued() == 1

    def test_a_forked_process_wakes_from_a_thread_of_its_own(self, wakes):
        # As a server that forks its workers: the parent's thread (and its
        # lock) stay behind, the child starts its own.
        waker._WAKER.ask()
        assert waker.flush()
        child = os.fork()
        if child == 0:  # pragma: no cover (the child reports by its exit code)
            code = 1
            try:
                waker._WAKER.ask()
                answered = waker.flush(10)
                code = 0 if answered and wakes[-1:] == ["webhooks-waker"] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
