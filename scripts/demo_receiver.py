"""The demo's webhook receiver: it subscribes itself, then checks every POST.

    CKAN_API_TOKEN=... python scripts/demo_receiver.py \
        --ckan http://127.0.0.1:5000 --port 8765 [--create-dataset NAME]

1. starts an HTTP server on 127.0.0.1:PORT,
2. creates a webhook for every event (topic ``*``) with ckanapi's RemoteCKAN,
   pointing at itself, and keeps the secret CKAN returns,
3. optionally creates a dataset, so that there is something to hear about,
4. verifies each delivery's signature with the ``standardwebhooks`` package
   (the reference implementation of the Standard Webhooks spec) and prints
   the verified events; forged or stale requests get 400 and are reported.

It accepts deliveries for any webhook of the site, not only its own: a body
names its webhook (``webhook_id``), and the receiver asks the site for that
webhook's secret (``webhook_show``, which its token, a sysadmin's, may call
for any webhook). Each event is reported as verified for that webhook, or
as rejected with the reason (no such webhook, bad signature).

With ``--first-event FILE`` the first verified event is also written to FILE,
which the demo script waits for. The receiver runs until it is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ckanapi import NotAuthorized, NotFound, RemoteCKAN, ValidationError
from standardwebhooks import Webhook, WebhookVerificationError


def say(text: str) -> None:
    print(f"receiver: {text}", flush=True)


class VerifyingReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, first_event: Path | None) -> None:
        super().__init__(("127.0.0.1", port), VerifyingHandler)
        self.ckan: RemoteCKAN | None = None
        self.verifiers: dict[str, Webhook] = {}  # by webhook id
        self.first_event = first_event
        self.verified = 0
        self.lock = threading.Lock()

    def verifier(self, webhook_id: str, fresh: bool = False) -> Webhook | None:
        """The verifier of a webhook of the site (its secret asked for once,
        and again after a failure: the secret may have been rotated)."""
        with self.lock:
            known = self.verifiers.get(webhook_id)
        if known is not None and not fresh:
            return known
        try:
            secret = self.ckan.action.webhook_show(id=webhook_id)["secret"]
        except (NotFound, NotAuthorized, ValidationError):
            return None
        verifier = Webhook(secret)
        with self.lock:
            self.verifiers[webhook_id] = verifier
        return verifier

    def verify(self, body: bytes, headers: dict[str, str]) -> tuple[Any, str]:
        """(payload, webhook id) of a delivery this site signed; raises
        WebhookVerificationError saying why not."""
        try:
            claimed = json.loads(body).get("webhook_id")
        except (ValueError, AttributeError):
            claimed = None
        if not isinstance(claimed, str) or not claimed:
            raise WebhookVerificationError("the body names no webhook_id")
        verifier = self.verifier(claimed)
        if verifier is None:
            raise WebhookVerificationError(f"no webhook {claimed} on the site")
        try:
            return verifier.verify(body, headers), claimed
        except WebhookVerificationError:
            verifier = self.verifier(claimed, fresh=True)  # rotated since?
            if verifier is None:
                raise
            return verifier.verify(body, headers), claimed

    def accept_event(
        self, payload: Any, headers: dict[str, str], webhook_id: str
    ) -> None:
        with self.lock:
            self.verified += 1
            first = self.verified == 1
        say(
            f"verified {payload.get('topic')} event for webhook {webhook_id} "
            f"(webhook-id {headers.get('webhook-id')}):\n"
            + json.dumps(payload, indent=2, sort_keys=True)
        )
        if first and self.first_event is not None:
            tmp = self.first_event.with_suffix(".tmp")
            tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            tmp.replace(self.first_event)


class VerifyingHandler(BaseHTTPRequestHandler):
    server: VerifyingReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        if self.server.ckan is None:
            self._answer(503, "not subscribed yet")
            return
        try:
            payload, webhook_id = self.server.verify(body, headers)
        except WebhookVerificationError as error:
            say(f"REJECTED (not verified) a request to {self.path}: {error}")
            self._answer(400, f"not verified: {error}")
            return
        self._answer(200, f"verified for webhook {webhook_id}")
        self.server.accept_event(payload, headers, webhook_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckan", required=True, help="the CKAN site's URL")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--topic", default="*")
    parser.add_argument("--create-dataset", metavar="NAME")
    parser.add_argument("--first-event", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    token = os.environ.get("CKAN_API_TOKEN")
    if not token:
        sys.exit("receiver: set CKAN_API_TOKEN to an API token of the site")

    server = VerifyingReceiver(args.port, args.first_event)
    address = f"http://127.0.0.1:{server.server_address[1]}/ckan-events"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say(f"listening on {address}")

    ckan = RemoteCKAN(args.ckan, apikey=token, user_agent="ckanext-webhooks-demo")
    webhook_id = ckan.action.webhook_create(topic=args.topic, address=address)
    server.ckan = ckan
    say(f"subscribed: webhook {webhook_id} sends {args.topic!r} events to {address}")

    if args.create_dataset:
        ckan.action.package_create(
            name=args.create_dataset,
            title="Demo dataset",
            notes="Created by the ckanext-webhooks demo.",
        )
        say(f"created dataset {args.create_dataset!r}; waiting for its event")

    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
