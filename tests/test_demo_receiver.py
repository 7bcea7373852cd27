"""The demo's receiver (scripts/demo_receiver.py) against a live site: it
verifies deliveries for any webhook of the site, not only its own, and says
which it verified; a forged request is refused and reported."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from ckan.tests import factories
from ckanapi import RemoteCKAN

from tests.live import ROOT
from tests.support.processes import stop_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_line(log: Path, text: str, deadline: float = 60.0) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        content = log.read_text() if log.exists() else ""
        if text in content:
            return content
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the receiver's log:\n{content}")


@pytest.mark.ckan_config("ckan.plugins", "webhooks")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_the_demo_receiver_verifies_any_webhook_of_the_site(live_site, tmp_path):
    admin = factories.Sysadmin()
    token = factories.APIToken(user=admin["name"])["token"]
    port = free_port()
    log = tmp_path / "receiver.log"
    with log.open("w") as out:
        receiver = subprocess.Popen(
            [sys.executable, "scripts/demo_receiver.py", "--ckan", live_site.url,
             "--port", str(port), "--topic", "custom/demo"],
            cwd=ROOT,
            env={"CKAN_API_TOKEN": token, "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_line(log, "subscribed: webhook")
        # An app developer's own webhook, created against the same site.
        developer = factories.User()
        app_token = factories.APIToken(user=developer["name"])["token"]
        app = RemoteCKAN(live_site.url, apikey=app_token)
        theirs = app.action.webhook_create(
            topic="dataset/create", address=f"http://127.0.0.1:{port}/my-app"
        )
        assert app.action.webhook_test(id=theirs)["success"] is True
        wait_for_line(log, f"verified webhook/ping event for webhook {theirs}")

        forged = requests.post(
            f"http://127.0.0.1:{port}/my-app",
            data=f'{{"webhook_id": "{theirs}"}}',
            headers={
                "webhook-id": "evt_forged",
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
            },
            timeout=10,
        )
        assert forged.status_code == 400
        assert "not verified" in forged.text
        assert "REJECTED (not verified)" in wait_for_line(log, "REJECTED")
    finally:
        stop_process(receiver, grace=5)
