"""A redis-server of a test's own, so it can be stopped and started safely."""

from __future__ import annotations

import shutil
import subprocess

import ckan.lib.jobs
import ckan.lib.redis
import pytest
from redis import ConnectionPool

from tests.support.processes import (
    accepts_connections,
    free_port,
    stop_process,
    wait_until,
)


class PrivateRedis:
    """redis-server on a free port, without persistence: a restart is empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        if not wait_until(lambda: accepts_connections(self.port), timeout=10):
            raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, grace=0, group=False)


@pytest.fixture
def private_redis(monkeypatch, ckan_config):
    """A PrivateRedis that this test's CKAN (jobs, wake-ups) uses."""
    redis = PrivateRedis()
    redis.start()
    monkeypatch.setitem(ckan_config, "ckan.redis.url", redis.url)
    monkeypatch.setattr(
        ckan.lib.redis, "_connection_pool", ConnectionPool.from_url(redis.url)
    )
    monkeypatch.setattr(ckan.lib.jobs, "_queues", {})
    yield redis
    _forget_rq_connections_to(redis)
    redis.stop()


def _forget_rq_connections_to(server: PrivateRedis) -> None:
    """Take this server's connections off RQ's connection stack.

    CKAN 2.11 pushes every new connection onto RQ's global stack
    (``ckan.lib.jobs._connect``), and RQ falls back on the top of it: left
    there, a stopped server would answer later tests' jobs. CKAN 2.12's RQ
    has no such stack.
    """
    import rq.connections

    stack = getattr(rq.connections, "_connection_stack", None)
    if stack is None:
        return
    kept = []
    while stack.top is not None:
        connection = stack.pop()
        if connection.connection_pool.connection_kwargs.get("port") != server.port:
            kept.append(connection)
    for connection in reversed(kept):
        stack.push(connection)
