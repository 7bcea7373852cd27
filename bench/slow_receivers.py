"""Thousands of slow receivers: webhooks answered after 1 s, one stock worker.

    python bench/slow_receivers.py [--webhooks 10000] [--delay 1] [--concurrency 1000]

One event goes to every webhook; each webhook has a path of its own on the
benchmark receiver (``tests/support/receivers/counting.py``), which answers
after ``--delay`` seconds (``?delay=1``).
``ckanext.webhooks.max_rate_per_host`` is 0 (every webhook is on one host).
Three runs, each with a fresh stock worker:

* a fifth of the webhooks: the work horse's peak memory to compare with;
* all of them: the time from the wake-up of the queue until the last one
  arrived, and the work horse's peak memory;
* all of them plus one receiver that never answers (``?hang=1``), first in
  line: the time for the others, beside the run without it, and how the
  hanging attempt was logged.

The baselines printed beside: the ideal time with this concurrency
(webhooks x delay / concurrency) and what a pool of 50 threads, the sender
before the event loop, would need at best.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import (
    SEARCH_STUB_NOTE,
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
    verdict,
    wake_and_wait_for_start,
)

from tests.support.receivers.counting import ReceiverProcess

TARGET_SECONDS = 20.0
THREADS_BEFORE = 50
TIMEOUT = 5


def hang_attempt(webhook_id: str, wait: float) -> Any:
    """The logged attempt of the hanging webhook, once it is written."""
    import ckan.model as model
    from sqlalchemy import text

    deadline = time.monotonic() + wait
    while True:
        row = model.Session.execute(
            text(
                "SELECT error, latency_ms, outcome FROM webhook_attempt "
                "WHERE webhook_id = :id"
            ),
            {"id": webhook_id},
        ).first()
        model.Session.commit()
        if row is not None or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def run(
    ini: Any,
    receiver: ReceiverProcess,
    dataset: dict[str, Any],
    owner: str,
    webhooks: int,
    delay: float,
    hang: bool,
) -> dict[str, Any]:
    """Deliver one event to ``webhooks`` slow webhooks (and one hanging)."""
    import ckan.model as model
    from sqlalchemy import text

    model.Session.execute(
        text("TRUNCATE webhook_attempt, webhook_delivery, webhook_event, webhook")
    )
    model.Session.commit()
    receiver.reset()
    rows = []
    if hang:  # first in line, so it is sent with the first batch
        rows.append({"address": f"{receiver.url}/hang?hang=1", "owner_id": owner})
    rows += [
        {"address": f"{receiver.url}/slow/{n}?delay={delay:g}", "owner_id": owner}
        for n in range(webhooks)
    ]
    ids = insert_webhooks(rows)
    with Worker(ini, log_name=f"slow-receivers-{webhooks}") as worker:
        worker.wait_ready()
        insert_events([dataset], 1)
        woken_at = wake_and_wait_for_start()
        stats = receiver.wait_for(webhooks, timeout=120, poll=0.1)
        result: dict[str, Any] = {
            "received": stats["count"],
            "duplicates": stats["duplicates"],
            "seconds": (stats["last"] or time.time()) - woken_at,
        }
        if hang:
            result["hang"] = hang_attempt(ids[0], wait=3 * TIMEOUT)
        deadline = time.monotonic() + 3 * TIMEOUT
        while delivery_outcomes().get("pending", 0) and time.monotonic() < deadline:
            time.sleep(0.1)
    result["outcomes"] = delivery_outcomes()
    result["horse_mb"] = max(worker.horse_peak_kb.values(), default=0) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", type=int, default=10_000)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=1000)
    args = parser.parse_args()

    header("slow receivers: 1 event x slow webhooks, one stock worker")
    ini = ini_with(
        **{
            "ckanext.webhooks.concurrency": args.concurrency,
            "ckanext.webhooks.timeout": TIMEOUT,
            "ckanext.webhooks.max_rate_per_host": 0,
        }
    )
    load_ckan(ini)
    print(SEARCH_STUB_NOTE)
    reset_state()
    admin = sysadmin()
    dataset = create_datasets(admin, 1)[0]
    small = max(1, args.webhooks // 5)
    ideal = args.webhooks * args.delay / args.concurrency
    threads = args.webhooks * args.delay / THREADS_BEFORE
    print(
        f"{args.webhooks} webhooks answering after {args.delay:g} s; concurrency "
        f"{args.concurrency}, timeout {TIMEOUT} s, max_rate_per_host 0"
    )
    with ReceiverProcess() as receiver:
        owner = admin["id"]
        few = run(ini, receiver, dataset, owner, small, args.delay, False)
        plain = run(ini, receiver, dataset, owner, args.webhooks, args.delay, False)
        hung = run(ini, receiver, dataset, owner, args.webhooks, args.delay, True)
    reset_state()
    report(args, small, ideal, threads, few, plain, hung)


def report(
    args: argparse.Namespace,
    small: int,
    ideal: float,
    threads: float,
    few: dict[str, Any],
    plain: dict[str, Any],
    hung: dict[str, Any],
) -> None:
    for label, result, count in (
        (f"{small} slow", few, small),
        (f"{args.webhooks} slow", plain, args.webhooks),
        (f"{args.webhooks} slow + 1 hanging", hung, args.webhooks),
    ):
        print(
            f"{label:<28} {result['received']}/{count} arrived in "
            f"{result['seconds']:6.2f} s, {result['duplicates']} duplicates, "
            f"work horse peak RSS {result['horse_mb']:.0f} MB, "
            f"outcomes {result['outcomes']}"
        )
    error, latency, outcome = hung["hang"] or (None, None, None)
    print(
        f"hanging webhook: attempt logged as {outcome!r} ({error}) after {latency} ms"
    )
    print()
    complete = plain["received"] >= args.webhooks and hung["received"] >= args.webhooks
    print(
        f"target: all {args.webhooks} delivered within {TARGET_SECONDS:.0f} s: "
        f"{plain['seconds']:.2f} s (ideal at concurrency {args.concurrency}: "
        f"{ideal:.1f} s; {THREADS_BEFORE} threads: at least {threads:.0f} s) "
        f"{verdict(complete and plain['seconds'] <= TARGET_SECONDS)}"
    )
    extra = hung["seconds"] - plain["seconds"]
    logged = bool(error and "deadline" in error)
    print(
        f"target: one hanging receiver delays no other: {extra:+.2f} s beside the "
        f"run without it (its own deadline is {TIMEOUT} s; it is logged with the "
        f"deadline: {logged}) {verdict(complete and extra < TIMEOUT / 2 and logged)}"
    )
    growth = plain["horse_mb"] - few["horse_mb"]
    print(
        f"target: memory stays flat: work horse peak RSS {few['horse_mb']:.0f} MB "
        f"at {small}, {plain['horse_mb']:.0f} MB at {args.webhooks} "
        f"({growth:+.0f} MB) {verdict(growth <= 10)} (no growth beyond 10 MB)"
    )


if __name__ == "__main__":
    main()
