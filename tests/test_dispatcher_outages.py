"""``ckan webhooks dispatch --loop`` outlives Redis and PostgreSQL outages:
it logs, waits and goes on, and wakes a worker once both are back."""

import os
import signal
import subprocess
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from ckan.plugins import toolkit as tk
from ckan.tests import factories, helpers

from ckanext.webhooks.delivery import wake_key
from tests.helpers import Site
from tests.support.processes import CKAN_CLI, stop_process, wait_until
from tests.support.tcp_proxy import CuttableProxy


def through(proxy, url):
    """The database URL with the proxy's port in place of the server's."""
    parts = urlsplit(url)
    netloc = f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_dispatcher_survives_redis_and_database_outages(
    private_redis, receiver, tmp_path
):
    dataset = factories.Dataset()
    helpers.call_action(
        "webhook_create", topic="dataset/update", address=f"{receiver.url}/h"
    )
    helpers.call_action("package_patch", id=dataset["id"], title="waiting")
    queue = redis.Redis.from_url(private_redis.url)
    queue.flushdb()  # the event waits; only the dispatcher may wake a worker
    database_port = urlsplit(tk.config["sqlalchemy.url"]).port or 5432
    log = tmp_path / "dispatch.log"
    with CuttableProxy(database_port) as proxy:
        site = Site()
        site.env["CKAN_SQLALCHEMY_URL"] = through(proxy, tk.config["sqlalchemy.url"])
        site.env["CKAN_REDIS_URL"] = private_redis.url
        dispatcher = subprocess.Popen(
            [CKAN_CLI, "-c", site.ini, "webhooks", "dispatch", "--loop",
             "--interval", "0.2"],
            env=site.env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            start_new_session=True,
        )  # fmt: skip

        def woken():
            try:
                return queue.exists(wake_key())
            except redis.ConnectionError:
                return False

        def logged(text):
            return text in log.read_text()

        try:
            assert wait_until(woken, timeout=60), log.read_text()

            private_redis.stop()
            assert wait_until(lambda: logged("could not wake a worker"), 30)
            assert dispatcher.poll() is None
            private_redis.start()  # empty: the wake-up is gone with the old one
            assert wait_until(woken, timeout=30), log.read_text()

            proxy.cut()
            assert wait_until(lambda: logged("dispatch failed"), 30), log.read_text()[
                -3000:
            ]
            assert wait_until(lambda: log.read_text().count("dispatch failed") >= 3, 30)
            assert dispatcher.poll() is None
            queue.delete(wake_key())
            proxy.restore()
            assert wait_until(woken, timeout=60), log.read_text()
            assert dispatcher.poll() is None
        finally:
            os.killpg(dispatcher.pid, signal.SIGTERM)
            stop_process(dispatcher, grace=15)
    assert dispatcher.returncode == 0
