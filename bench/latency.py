"""Latency: from the commit of a package_update to the receiver.

    python bench/latency.py [--samples 20] [--pause 0.5]

A stock ``ckan jobs worker`` waits, idle. This process updates a dataset
through the action API (``POST /api/3/action/package_update``), one update at
a time with a pause between them, and times each from the commit of the
transaction that wrote the outbox row (an SQLAlchemy ``after_commit``
listener that runs before the plugin's wake-up) to the arrival of the POST at
the receiver.

Two runs side by side: the baseline with ``linger_seconds = 0`` (every event
starts a job: Redis wake-up, the worker's fork, CKAN start-up) and the
default, where the delivery job lingers and wakes on LISTEN/NOTIFY. Then it
checks that CKAN's other jobs do not starve: a job enqueued on the same
(default) queue while a delivery job lingers, and while one delivers to slow
receivers, must start within 5 s.
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
    ini_with,
    insert_webhooks,
    load_ckan,
    median,
    percentile,
    reset_state,
    setup_done,
    sysadmin,
    verdict,
)

from tests.support.receivers.counting import ReceiverProcess

MEDIAN_TARGET = 0.050
P95_TARGET = 0.150
START_TARGET = 5.0


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


def _update(client: Any, admin: dict, dataset: dict, n: int) -> None:
    response = client.post(
        "/api/3/action/package_update",
        json={**dataset, "notes": f"latency {n} {uuid.uuid4().hex}"},
        headers={"Authorization": admin["token"]},
    )
    assert response.status_code == 200, response.get_data()[:300]


def measure(app: Any, ini: Any, admin: dict, dataset: dict, args: Any) -> list[float]:
    """Commit-to-receiver seconds of ``args.samples`` updates, one at a time."""
    from werkzeug.test import Client

    clock = CommitClock()
    latencies = []
    with ReceiverProcess() as receiver, Worker(ini, log_name="latency") as worker:
        reset_state()
        insert_webhooks(
            [
                {
                    "address": f"{receiver.url}/hook/latency",
                    "owner_id": admin["id"],
                    "package_id": dataset["id"],
                }
            ]
        )
        client = Client(app)
        worker.wait_ready()
        for n in range(args.samples + 1):
            time.sleep(args.pause)  # the worker is idle (or its job lingers)
            before = receiver.stats()["count"]
            clock.at = None
            _update(client, admin, dataset, n)
            stats = receiver.wait_for(before + 1, timeout=10, poll=0.002)
            if stats["count"] <= before or clock.at is None:
                raise RuntimeError(f"update {n} not delivered within 10 s")
            if n:  # the first one starts the worker's job and connections
                latencies.append(stats["last"] - clock.at)
    return latencies


def other_job_start(app: Any, ini: Any, admin: dict, dataset: dict) -> dict:
    """Seconds until a job on the default queue starts, behind deliveries."""
    import ckan.plugins.toolkit as tk
    from ckan.lib import jobs
    from werkzeug.test import Client

    waits = {}
    with ReceiverProcess() as receiver, Worker(ini, log_name="starve") as worker:
        for case, path in (("lingering", "fast"), ("delivering", "slow")):
            reset_state()
            # 100 receivers answering after 2 s keep a job busy for a while.
            delay = "?delay=2" if path == "slow" else ""
            insert_webhooks(
                [
                    {
                        "address": f"{receiver.url}/hook/{path}{n}{delay}",
                        "owner_id": admin["id"],
                        "package_id": dataset["id"],
                    }
                    for n in range(100 if path == "slow" else 1)
                ]
            )
            worker.wait_ready()
            _update(Client(app), admin, dataset, 0)
            time.sleep(1.0)  # the delivery job runs (or lingers) now
            job = tk.enqueue_job(jobs.test_job, ["bench"], title="bench: other job")
            enqueued = time.time()
            while job.get_status(refresh=True) in ("queued", "deferred"):
                if time.time() - enqueued > 60:
                    raise RuntimeError("the other job did not start within 60 s")
                time.sleep(0.01)
            waits[case] = time.time() - enqueued
    return waits


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
    setup_done()

    runs = {
        "baseline, a job per event (linger_seconds = 0)": ini_with(
            **{"ckanext.webhooks.linger_seconds": 0}
        ),
        "lingering job, LISTEN/NOTIFY (default)": ini_with(
            **{"ckanext.webhooks.linger_seconds": 60}
        ),
    }
    results = {
        name: measure(app, ini, admin, dataset, args) for name, ini in runs.items()
    }
    waits = other_job_start(
        app, runs["lingering job, LISTEN/NOTIFY (default)"], admin, dataset
    )
    reset_state()

    print(f"{args.samples} updates per run, {args.pause} s apart")
    for name, latencies in results.items():
        print(
            f"{name}: median {1000 * median(latencies):.0f} ms, "
            f"p95 {1000 * percentile(latencies, 0.95):.0f} ms, "
            f"min {1000 * min(latencies):.0f} ms, max {1000 * max(latencies):.0f} ms"
        )
    lingering = list(results.values())[-1]
    print(
        f"target: median <= {MEDIAN_TARGET * 1000:.0f} ms "
        f"{verdict(median(lingering) <= MEDIAN_TARGET)}; "
        f"p95 <= {P95_TARGET * 1000:.0f} ms "
        f"{verdict(percentile(lingering, 0.95) <= P95_TARGET)}"
    )
    for case, wait in waits.items():
        print(
            f"another job on the default queue, while a delivery job is {case}: "
            f"started after {wait:.2f} s (target <= {START_TARGET:.0f} s "
            f"{verdict(wait <= START_TARGET)})"
        )


if __name__ == "__main__":
    main()
