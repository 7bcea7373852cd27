"""Slow receivers: one event, 1,000 webhooks, each answered after 200 ms.

    python bench/slow_endpoints.py [--webhooks 1000] [--delay 0.2]

One stock worker (ckanext.webhooks.concurrency 50, timeout 5 s) delivers the
event to 1,000 slow webhooks; then the same again with one more webhook whose
receiver never answers. The hanging request holds one of the 50 threads until
the timeout and should delay nobody else: the time to deliver the 1,000 is
measured in both runs, side by side.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import (
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

from receiver import ReceiverProcess

TARGET_SECONDS = 10.0
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
    receiver: ReceiverProcess,
    dataset: dict[str, Any],
    owner: str,
    webhooks: int,
    delay: float,
    hang: bool,
) -> dict[str, Any]:
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
        {"address": f"{receiver.url}/slow/{n}?delay={delay}", "owner_id": owner}
        for n in range(webhooks)
    ]
    ids = insert_webhooks(rows)
    insert_events([dataset], 1)
    woken_at = wake_and_wait_for_start()
    stats = receiver.wait_for(webhooks, timeout=60)
    result = {
        "received": stats["count"],
        "seconds": (stats["last"] or time.time()) - woken_at,
    }
    if hang:
        result["hang"] = hang_attempt(ids[0], wait=3 * TIMEOUT)
    deadline = time.monotonic() + 3 * TIMEOUT
    while delivery_outcomes().get("pending", 0) > (1 if hang else 0):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    result["outcomes"] = delivery_outcomes()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()

    header("slow endpoints: 1 event x slow webhooks, one stock worker")
    ini = ini_with(
        **{
            "ckanext.webhooks.concurrency": 50,
            "ckanext.webhooks.timeout": TIMEOUT,
        }
    )
    load_ckan(ini)
    reset_state()
    admin = sysadmin()
    dataset = create_datasets(admin, 1)[0]
    print(
        f"{args.webhooks} webhooks answering after {args.delay * 1000:.0f} ms; "
        f"concurrency 50, timeout {TIMEOUT} s; ideal time "
        f"{args.webhooks * args.delay / 50:.1f} s"
    )
    with ReceiverProcess() as receiver, Worker(ini, log_name="slow") as worker:
        worker.wait_ready()
        plain = run(receiver, dataset, admin["id"], args.webhooks, args.delay, False)
        hung = run(receiver, dataset, admin["id"], args.webhooks, args.delay, True)
    reset_state()

    print(
        f"slow only:         {plain['received']}/{args.webhooks} delivered in "
        f"{plain['seconds']:.2f} s  outcomes {plain['outcomes']}"
    )
    print(
        f"slow + 1 hanging:  {hung['received']}/{args.webhooks} delivered in "
        f"{hung['seconds']:.2f} s  outcomes {hung['outcomes']}"
    )
    error, latency, outcome = hung["hang"] or (None, None, None)
    print(
        f"hanging webhook:   attempt logged as {outcome!r} ({error}) after {latency} ms"
    )
    complete = plain["received"] >= args.webhooks and hung["received"] >= args.webhooks
    in_time = plain["seconds"] <= TARGET_SECONDS
    print(
        f"\ntarget 3a: all {args.webhooks} delivered within {TARGET_SECONDS:.0f} s: "
        f"{plain['seconds']:.2f} s {verdict(complete and in_time)}"
    )
    extra = hung["seconds"] - plain["seconds"]
    print(
        f"target 3b: the hanging endpoint delays the others by {extra:+.2f} s "
        f"(ratio {hung['seconds'] / plain['seconds']:.2f}; its own timeout is "
        f"{TIMEOUT} s) {verdict(complete and extra < TIMEOUT / 2)}"
    )


if __name__ == "__main__":
    main()
