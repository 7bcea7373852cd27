"""Latency: from the commit of a package_update to the receiver.

    python bench/latency.py [--samples 20]

A stock ``ckan jobs worker`` waits, idle, on the queue. This process updates
a dataset through the action API (``POST /api/3/action/package_update``), one
update at a time with a pause between them, and times each from the commit
of the transaction that wrote the outbox row (an SQLAlchemy ``after_commit``
listener that runs before the plugin's wake-up) to the arrival of the POST at
the receiver. The path includes the wake-up through Redis, the worker's fork,
expansion, claiming, package_show, signing and the HTTP request.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from common import (
    SEARCH_STUB_NOTE,
    Worker,
    create_datasets,
    header,
    insert_webhooks,
    load_ckan,
    median,
    percentile,
    reset_state,
    setup_done,
    sysadmin,
    verdict,
)

from receiver import ReceiverProcess

TARGET = 0.5


class CommitClock:
    """Remembers when the last transaction that recorded an event committed."""

    def __init__(self) -> None:
        import ckan.model as model
        from sqlalchemy import event as sa_event

        from ckanext.webhooks import events

        self.flag = events._WAKE
        self.at: float | None = None
        sa_event.listen(model.meta.Session, "after_commit", self._seen, insert=True)

    def _seen(self, session: Any) -> None:
        if session.info.get(self.flag):
            self.at = time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.5)
    args = parser.parse_args()

    header("latency: package_update commit -> receiver, one idle worker")
    print(SEARCH_STUB_NOTE)
    app = load_ckan()
    reset_state()
    admin = sysadmin()
    dataset = create_datasets(admin, 1)[0]
    clock = CommitClock()

    from werkzeug.test import Client

    latencies = []
    with ReceiverProcess() as receiver, Worker(log_name="latency") as worker:
        insert_webhooks(
            [
                {
                    "address": f"{receiver.url}/hook/latency",
                    "owner_id": admin["id"],
                    "package_id": dataset["id"],
                }
            ]
        )
        setup_done()
        client = Client(app)
        worker.wait_ready()
        for n in range(args.samples + 1):
            time.sleep(args.pause)  # the worker is idle, waiting on the queue
            before = receiver.stats()["count"]
            clock.at = None
            response = client.post(
                "/api/3/action/package_update",
                json={**dataset, "notes": f"latency {n} {uuid.uuid4().hex}"},
                headers={"Authorization": admin["token"]},
            )
            assert response.status_code == 200, response.get_data()[:300]
            stats = receiver.wait_for(before + 1, timeout=10, poll=0.002)
            if stats["count"] <= before or clock.at is None:
                raise RuntimeError(f"update {n} not delivered within 10 s")
            if n:  # the first one warms up the worker's connections
                latencies.append(stats["last"] - clock.at)
    reset_state()

    print(f"{len(latencies)} updates, {args.pause} s apart")
    print(
        f"commit -> receiver: median {1000 * median(latencies):.0f} ms, "
        f"p95 {1000 * percentile(latencies, 0.95):.0f} ms, "
        f"min {1000 * min(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms"
    )
    print(
        f"target 4: median <= {TARGET * 1000:.0f} ms "
        f"{verdict(median(latencies) <= TARGET)}"
    )


if __name__ == "__main__":
    main()
