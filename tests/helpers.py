"""Shared test helpers: outbox inspection and real worker subprocesses."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
from typing import Any

import ckan.model as model
from sqlalchemy import text

ROOT = pathlib.Path(__file__).resolve().parent.parent
CKAN = str(pathlib.Path(sys.executable).with_name("ckan"))


def events(topic: str | None = None) -> list[tuple[str, str]]:
    """(topic, entity id) of every recorded event, oldest first."""
    rows = model.Session.execute(
        text("SELECT topic, entity_id FROM webhook_event ORDER BY sequence")
    ).all()
    model.Session.commit()
    return [tuple(r) for r in rows if topic is None or r[0] == topic]


def count(table: str) -> int:
    value = model.Session.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    model.Session.commit()
    return value


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
        return subprocess.run(
            [CKAN, "-c", self.ini, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [CKAN, "-c", self.ini, *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        """Kill a process from popen() with everything it forked.

        CKAN 2.12's worker forks an RQ scheduler; killing only the worker
        would leave that running, moving jobs around for later tests.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def work(self, timeout: float = 120) -> subprocess.CompletedProcess:
        """`ckan jobs worker --burst`: the stock worker, until the queue is empty."""
        return self.ckan("jobs", "worker", "--burst", timeout=timeout)

    def dispatch(self) -> subprocess.CompletedProcess:
        return self.ckan("webhooks", "dispatch")
