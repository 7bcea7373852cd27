"""Throughput, memory and scale-out of delivery by stock ``ckan jobs worker``s.

    python bench/throughput.py [--events 100] [--webhooks 100] [--owners 1]

In one run, to one local keep-alive receiver (its own process):

* a plain ``requests.Session`` loop POSTing as many bodies of the same size,
  one after another (before and after the worker runs; their mean is the
  reference);
* one worker delivering events x webhooks deliveries (default 10,000), and a
  fifth of that, with the peak RSS of the forked work horse for both;
* two workers on the same queue delivering the full load: duplicates counted
  at the receiver by (webhook-id, webhook URL), and the speed-up.

Deliveries per second run from the wake-up of the queue to the last request
received, so they include the job's fork and the expansion of the events.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import requests
from common import (
    CpuMeter,
    Worker,
    create_datasets,
    delivery_outcomes,
    header,
    ini_with,
    insert_events,
    insert_webhooks,
    load_ckan,
    reset_state,
    sysadmin,
    users,
    verdict,
    wake_and_wait_for_start,
)

from tests.support.receivers.counting import ReceiverProcess

TARGET_RATE = 500.0
TARGET_RATIO = 0.4
TARGET_SPEED_UP = 1.8


def sample_body(dataset: dict[str, Any]) -> bytes:
    """A body as big as a real delivery of ``dataset``."""
    import ckan.plugins.toolkit as tk

    shown = tk.get_action("package_show")(
        {"ignore_auth": True, "use_cache": False}, {"id": dataset["id"]}
    )
    payload = {"id": "evt_x", "topic": "dataset/update", "entity": shown}
    return json.dumps(payload, separators=(",", ":")).encode()


def plain_loop(receiver: ReceiverProcess, body: bytes, count: int) -> float:
    """Deliveries per second of one keep-alive Session posting in a loop."""
    receiver.reset()
    session = requests.Session()
    started = time.perf_counter()
    for n in range(count):
        response = session.post(
            f"{receiver.url}/plain/{n}",
            data=body,
            headers={"Content-Type": "application/json", "webhook-id": f"p{n}"},
            timeout=10,
        )
        response.raise_for_status()
    elapsed = time.perf_counter() - started
    session.close()
    return count / elapsed


def empty_queue_tables() -> None:
    import ckan.model as model
    from sqlalchemy import text

    model.Session.execute(
        text("TRUNCATE webhook_attempt, webhook_delivery, webhook_event")
    )
    model.Session.commit()


def worker_run(
    ini: Path,
    receiver: ReceiverProcess,
    datasets: list[dict[str, Any]],
    events: int,
    webhooks: int,
    workers: int,
) -> dict[str, Any]:
    """Deliver ``events`` x ``webhooks`` with ``workers`` fresh workers."""
    import ckan.model as model

    empty_queue_tables()
    receiver.reset()
    total = events * webhooks
    pool = [Worker(ini, log_name=f"throughput-{workers}w-{n}") for n in range(workers)]
    try:
        for worker in pool:
            worker.wait_ready()
        parents = [worker.process.pid for worker in pool]
        meter = CpuMeter(
            [receiver.process.pid, os.getpid(), *parents],
            model.meta.engine.url.database,
        )
        insert_events(datasets, events)
        woken_at = wake_and_wait_for_start()
        # Events keep coming in real life, and each commit wakes the queue:
        # a second wake-up while the first job runs gives a second worker work.
        from ckanext.webhooks.delivery import wake_workers

        wake_workers()
        stats = receiver.wait_for(total, timeout=max(60.0, total / 50))
        deadline = time.monotonic() + 30
        while delivery_outcomes().get("pending") and time.monotonic() < deadline:
            time.sleep(0.1)
        outcomes = delivery_outcomes()
        used = meter.stop()
    finally:
        for worker in pool:
            worker.stop()
    elapsed = (stats["last"] or time.time()) - woken_at
    horse_cpu = sum(c for w in pool for c in w.horse_cpu.values())
    return {
        "total": total,
        "received": stats["count"],
        "unique": stats["unique"],
        "duplicates": stats["duplicates"],
        "seconds": elapsed,
        "rate": stats["count"] / elapsed,
        "outcomes": outcomes,
        "horse_peak_mb": max(
            (kb for w in pool for kb in w.horse_peak_kb.values()), default=0
        )
        / 1024,
        "cpu_ms": 1000 * horse_cpu / total,
        "receiver_ms": 1000 * used[str(receiver.process.pid)] / total,
        "postgres_ms": 1000 * used["postgres"] / total,
        "bench_ms": 1000 * used[str(os.getpid())] / total,
        "parents_ms": 1000 * sum(used[str(pid)] for pid in parents) / total,
        "postgres_other_ms": 1000 * used["postgres other"] / total,
        "machine_ms": 1000 * used["machine"] / total,
        "window": meter.seconds,
        "worker_peak_mb": max(w.worker_peak_kb for w in pool) / 1024,
    }


def describe(label: str, run: dict[str, Any]) -> None:
    cpus = os.cpu_count() or 1
    print(
        f"{label:<28} {run['received']:>6}/{run['total']:<6} in "
        f"{run['seconds']:6.2f} s = {run['rate']:7.0f}/s  "
        f"dup {run['duplicates']}  horse CPU {run['cpu_ms']:.2f} ms/delivery  "
        f"peak RSS {run['horse_peak_mb']:.0f} MB  "
        f"outcomes {run['outcomes']}"
    )
    print(
        f"{'':<28} CPU per delivery: work horse {run['cpu_ms']:.2f} ms, receiver "
        f"{run['receiver_ms']:.2f} ms, PostgreSQL {run['postgres_ms']:.2f} ms "
        f"(other databases and the server's own {run['postgres_other_ms']:.2f} "
        f"ms), this script {run['bench_ms']:.2f} ms, worker parents "
        f"{run['parents_ms']:.2f} ms; whole machine {run['machine_ms']:.2f} ms, "
        f"{run['machine_ms'] * run['total'] / 10 / run['window'] / cpus:.0f}% of "
        f"{cpus} CPUs over {run['window']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument(
        "--owners",
        type=int,
        default=1,
        help="distinct webhook owners (package_show runs once per owner "
        "and dataset in each batch)",
    )
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--no-scale-out", action="store_true")
    args = parser.parse_args()

    header("throughput: stock `ckan jobs worker` vs a plain requests.Session loop")
    ini = ini_with(**{"ckanext.webhooks.concurrency": args.concurrency})
    load_ckan(ini)
    reset_state()
    admin = sysadmin()
    datasets = create_datasets(admin, args.datasets)
    owners = users(args.owners) if args.owners > 1 else [admin["id"]]
    small_events = max(1, args.events // 5)
    print(
        f"load: {args.events} events over {args.datasets} datasets x "
        f"{args.webhooks} webhooks ({len(owners)} owner(s)) = "
        f"{args.events * args.webhooks} deliveries; "
        f"concurrency {args.concurrency}"
    )

    with ReceiverProcess() as receiver:
        insert_webhooks(
            [
                {
                    "address": f"{receiver.url}/hook/{n}",
                    "owner_id": owners[n % len(owners)],
                }
                for n in range(args.webhooks)
            ]
        )
        body = sample_body(datasets[0])
        total = args.events * args.webhooks
        plain_before = plain_loop(receiver, body, total)
        small = worker_run(ini, receiver, datasets, small_events, args.webhooks, 1)
        one = worker_run(ini, receiver, datasets, args.events, args.webhooks, 1)
        two = None
        if not args.no_scale_out:
            two = worker_run(ini, receiver, datasets, args.events, args.webhooks, 2)
        plain_after = plain_loop(receiver, body, total)

    plain = (plain_before + plain_after) / 2
    print(f"payload size: {len(body)} bytes")
    print(
        f"{'plain requests.Session loop':<28} {plain:7.0f}/s "
        f"(before {plain_before:.0f}/s, after {plain_after:.0f}/s)"
    )
    describe("1 worker, small load", small)
    describe("1 worker", one)
    if two:
        describe("2 workers", two)
    ratio = one["rate"] / plain
    print()
    print(
        f"target 2: {one['rate']:.0f} deliveries/s (>= {TARGET_RATE:.0f}) "
        f"{verdict(one['rate'] >= TARGET_RATE)}; {ratio:.2f} of the plain loop "
        f"(>= {TARGET_RATIO}) {verdict(ratio >= TARGET_RATIO)}"
    )
    growth = one["horse_peak_mb"] - small["horse_peak_mb"]
    print(
        f"target 5: work horse peak RSS {small['horse_peak_mb']:.0f} MB at "
        f"{small['total']} deliveries, {one['horse_peak_mb']:.0f} MB at "
        f"{one['total']} ({growth:+.0f} MB); worker parent "
        f"{one['worker_peak_mb']:.0f} MB; {verdict(growth <= 10)} "
        "(no growth beyond 10 MB)"
    )
    if two:
        complete = two["unique"] == total and two["duplicates"] == 0
        speed_up = two["rate"] / one["rate"]
        # What the machine could give two workers if every CPU worked for
        # them, at the CPU per delivery (everyone's) of their own run.
        ceiling = 1000 * (os.cpu_count() or 1) / two["machine_ms"] / one["rate"]
        print(
            f"target 6: 2 workers {two['rate']:.0f}/s, speed-up "
            f"{speed_up:.2f}x (>= {TARGET_SPEED_UP}) "
            f"{verdict(speed_up >= TARGET_SPEED_UP)}; {two['unique']}/{total} "
            f"delivered, {two['duplicates']} duplicates {verdict(complete)}; "
            f"every CPU busy at that run's CPU per delivery would give "
            f"{ceiling:.2f}x"
        )


if __name__ == "__main__":
    main()
