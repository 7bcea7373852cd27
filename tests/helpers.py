"""Shared test helpers: outbox inspection and real worker subprocesses."""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
from typing import Any

import ckan.model as model
from sqlalchemy import text

from tests.support.processes import CKAN_CLI as CKAN
from tests.support.processes import ROOT, stop_process


def events(topic: str | None = None) -> list[tuple[str, str]]:
    """(topic, entity id) of every event some webhook wanted, oldest first.

    The others are kept too, for the event feed, but born expanded: they
    wake no worker and have no delivery.
    """
    rows = model.Session.execute(
        text(
            "SELECT topic, entity_id FROM webhook_event e WHERE NOT e.expanded "
            "OR EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.event_id = e.id) "
            "ORDER BY sequence"
        )
    ).all()
    model.Session.commit()
    return [tuple(r) for r in rows if topic is None or r[0] == topic]


def count(table: str) -> int:
    value = model.Session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    model.Session.commit()
    return value


def _wake_ups_done() -> None:
    """Requests of the test app wake workers from a thread of this process
    (delivery/waker.py), as a web process does: a worker started next finds
    their jobs queued."""
    from ckanext.webhooks.delivery import waker

    assert waker.flush(), "the waker thread is stuck"


class Site:
    """A CKAN config for subprocesses: test.ini plus option overrides."""

    def __init__(self, **options: Any):
        self.dir = tempfile.mkdtemp(prefix="webhooks-test-")
        self.ini = os.path.join(self.dir, "site.ini")
        lines = ["[app:main]", f"use = config:{ROOT / 'test.ini'}"]
        lines += [f"{key} = {value}" for key, value in options.items()]
        # `use` does not carry the logging sections over: copy them.
        base = (ROOT / "test.ini").read_text()
        lines.append(base[base.index("[loggers]") :])
        pathlib.Path(self.ini).write_text("\n".join(lines) + "\n")
        self.env = dict(os.environ)

    def ckan(self, *args: str, timeout: float = 120, check: bool = True):
        _wake_ups_done()
        return subprocess.run(
            [CKAN, "-c", self.ini, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        _wake_ups_done()
        return subprocess.Popen(
            [CKAN, "-c", self.ini, *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        """Kill a process from popen() with everything it forked, at once."""
        stop_process(process, grace=0)

    def work(self, timeout: float = 120) -> subprocess.CompletedProcess:
        """`ckan jobs worker --burst`: the stock worker, until the queue is empty."""
        return self.ckan("jobs", "worker", "--burst", timeout=timeout)

    def dispatch(self) -> subprocess.CompletedProcess:
        return self.ckan("webhooks", "dispatch")
