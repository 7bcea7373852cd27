"""A live CKAN site for end-to-end tests: ``ckan run`` with a Solr stand-in.

It shares the test database and Redis (from the running test's config), so
the test can prepare data with factories and read the outbox directly.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from ckan.plugins import toolkit as tk

from tests.support.processes import CKAN_CLI, ROOT, free_port, stop_process

CKAN = Path(CKAN_CLI)
STARTUP_DEADLINE = 90


class LiveSite:
    """``ckan run`` on a free port, sharing the test database and Redis."""

    def __init__(self, workdir: Path, options: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.options = options or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ini = workdir / "live.ini"
        self.log = workdir / "ckan-run.log"
        self.processes: list[subprocess.Popen] = []

    def _start(self, args: list[str], log: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def _start_solr_standin(self) -> str:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "solr_standin.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        line = process.stdout.readline()
        assert "listening on" in line, f"Solr stand-in did not start: {line!r}"
        return line.split("listening on ")[1].strip()

    def _write_ini(self, solr_url: str) -> None:
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # keep option names as written
        parser.read(ROOT / "test.ini")
        parser["app:main"].update(
            {
                "ckan.site_url": self.url,
                "ckan.site_id": "webhooks_browser",
                "solr_url": solr_url,
                "sqlalchemy.url": tk.config["sqlalchemy.url"],
                "ckan.redis.url": tk.config["ckan.redis.url"],
                "ckan.storage_path": str(self.workdir / "storage"),
                **self.options,
            }
        )
        with self.ini.open("w") as out:
            parser.write(out)

    def start(self) -> LiveSite:
        self._write_ini(self._start_solr_standin())
        server = self._start(
            [str(CKAN), "-c", str(self.ini), "run", "-H", "127.0.0.1",
             "-p", str(self.port), "--disable-reloader", "--threaded"],
            self.log,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            assert server.poll() is None, self.log.read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/api/3/action/status_show").ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"ckan run did not answer:\n{self.log.read_text()}")

    def run_worker(self) -> str:
        """``ckan jobs worker --burst``: run what is queued, then exit."""
        done = subprocess.run(
            [str(CKAN), "-c", str(self.ini), "jobs", "worker", "--burst"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process, grace=10)


@pytest.fixture
def live_site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveSite]:
    """A live site; ``@pytest.mark.live_config(option=value)`` sets options."""
    marker = request.node.get_closest_marker("live_config")
    site = LiveSite(
        tmp_path, {k: str(v) for k, v in (marker.kwargs if marker else {}).items()}
    )
    try:
        yield site.start()
    finally:
        site.stop()


class ConfiguredLiveSite(LiveSite):
    """A LiveSite with extra options in its [app:main] (e.g. limits to test)."""

    def __init__(self, workdir: Path, **options: object) -> None:
        super().__init__(workdir)
        self.options = {key: str(value) for key, value in options.items()}

    def _write_ini(self, solr_url: str) -> None:
        super()._write_ini(solr_url)
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # keep option names as written
        parser.read(self.ini)
        parser["app:main"].update(self.options)
        with self.ini.open("w") as out:
            parser.write(out)


def start_live_site(workdir: Path, **options: object) -> LiveSite:
    """``ckan run`` as the live_site fixture starts it, plus ``options``.

    The caller stops it (``site.stop()`` in a ``finally``).
    """
    site = ConfiguredLiveSite(workdir, **options)
    try:
        return site.start()
    except BaseException:
        site.stop()
        raise
