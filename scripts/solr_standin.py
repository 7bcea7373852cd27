"""A stand-in for Solr, so that a demo or test CKAN site can write datasets.

It is NOT a search engine. It accepts index updates and throws them away,
answers every search with zero hits, and reports the schema name CKAN 2.11
checks for at start-up. Dataset pages, the API and webhooks work; dataset
search and listings stay empty. Real deployments use their own Solr.

    python scripts/solr_standin.py [--port 8983]

Prints ``solr-standin: listening on http://127.0.0.1:PORT/solr/ckan`` once it
accepts connections (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SCHEMA = b'<?xml version="1.0"?>\n<schema name="ckan-2.11" version="1.6"/>\n'
NO_HITS = {
    "responseHeader": {"status": 0, "QTime": 0},
    "response": {"numFound": 0, "start": 0, "docs": []},
    "facet_counts": {"facet_fields": {}},
}
DONE = {"responseHeader": {"status": 0, "QTime": 0}}


class StandinHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/schema") or path.endswith("/admin/file"):
            self._reply(SCHEMA, "application/xml")
        elif path.endswith("/select"):
            self._reply(json.dumps(NO_HITS).encode(), "application/json")
        else:  # /update, /admin/ping and anything else: accepted and ignored
            self._reply(json.dumps(DONE).encode(), "application/json")

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8983)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), StandinHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"solr-standin: listening on http://{host}:{port}/solr/ckan", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
