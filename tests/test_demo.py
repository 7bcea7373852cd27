"""The one-command demo from the README, run the way a newcomer runs it.

``bash scripts/demo.sh --once`` sets up its own site (its own database, Redis
db and directory, free ports), prints the verified event and stops everything
it started. The first run on a machine also builds the virtualenv.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.demo


def test_demo_once_prints_a_verified_event_and_cleans_up(tmp_path):
    from ckan.plugins import toolkit as tk

    # Named after this run's test database: not the demo's default, so that a
    # demo someone left running is untouched, and not another test run's.
    test_db = tk.config["sqlalchemy.url"].rsplit("/", 1)[1].split("?")[0]
    env = {
        **os.environ,
        "WEBHOOKS_DEMO_DIR": str(tmp_path / "demo-site"),
        "WEBHOOKS_DEMO_DB": f"{test_db}_demo"[:63],
        "WEBHOOKS_DEMO_REDIS_DB": "12",
    }
    done = subprocess.run(
        ["bash", "scripts/demo.sh", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout
    assert done.returncode == 0, output + done.stderr

    assert "Solr stand-in" in output
    assert "NOT a search engine" in output
    assert "receiver: verified dataset/create event" in output
    assert '"name": "demo-dataset"' in output
    assert '"topic": "dataset/create"' in output
    assert output.rstrip().endswith("stopping everything (--once)")
    token = re.search(r"your API token \(the demo user's\): (\S+)", output).group(1)
    assert "action webhook_create -r http://127.0.0.1:" in output
    assert f'apikey="{token}"' in output

    site = re.search(r"web server on (http://127\.0\.0\.1:\d+)", output).group(1)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{site}/api/3/action/status_show", timeout=5)
    assert not (tmp_path / "demo-site" / "pids").exists()


def test_demo_stop_without_a_running_demo(tmp_path):
    done = subprocess.run(
        ["bash", "scripts/demo.sh", "--stop"],
        cwd=ROOT,
        env={**os.environ, "WEBHOOKS_DEMO_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == "demo: stopped"
