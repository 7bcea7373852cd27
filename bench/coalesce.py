"""A harvest-like burst with coalescing off and on: deliveries per webhook.

    python bench/coalesce.py [--datasets 200] [--updates 2000] [--seconds 60]

``--updates`` updates of ``--datasets`` datasets through ``package_patch``
(the real capture path), paced over ``--seconds``, while the outbox is
expanded every second as a delivery worker would. One site-wide webhook on
``dataset/update``. The same burst runs with
``ckanext.webhooks.coalesce_seconds`` at 0 and at ``--seconds``; the figure
is the number of deliveries that would be sent (those not merged away), and
the updates they stand for, which must add up to every update: nothing is
lost, only merged.
"""

from __future__ import annotations

import argparse
import math
import random
import time

from common import (
    SEARCH_STUB_NOTE,
    create_datasets,
    header,
    insert_webhooks,
    load_ckan,
    reset_state,
    sysadmin,
    verdict,
)

_COUNTS = """
    SELECT count(*) FILTER (WHERE status <> 'coalesced'),
           COALESCE(sum(coalesced) FILTER (WHERE status <> 'coalesced'), 0)
    FROM webhook_delivery
"""


def burst(datasets: list[dict], updates: int, seconds: float, window: int) -> tuple:
    """Run the burst with ``coalesce_seconds`` at ``window``; (deliveries,
    updates they stand for, seconds the burst took)."""
    import ckan.model as model
    import ckan.plugins.toolkit as tk
    from sqlalchemy import text

    from ckanext.webhooks.delivery.outbox import expand_events

    tk.config["ckanext.webhooks.coalesce_seconds"] = window
    model.Session.execute(text("TRUNCATE webhook_delivery, webhook_attempt"))
    model.Session.commit()
    rng = random.Random(16)
    context = {"user": sysadmin()["name"], "ignore_auth": True}
    started = time.monotonic()
    last_expansion = started
    for n in range(updates):
        # Paced: update n is due at n * seconds / updates.
        time.sleep(max(0.0, started + n * seconds / updates - time.monotonic()))
        dataset = rng.choice(datasets)
        tk.get_action("package_patch")(
            dict(context), {"id": dataset["id"], "notes": f"harvested {n}"}
        )
        if time.monotonic() - last_expansion >= 1:
            expand_events()
            last_expansion = time.monotonic()
    took = time.monotonic() - started
    expand_events()
    sent, stands_for = model.Session.execute(text(_COUNTS)).one()
    model.Session.commit()
    return sent, stands_for, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()

    header("coalescing: a harvest-like burst of updates")
    print(SEARCH_STUB_NOTE)
    load_ckan()
    reset_state()
    datasets = create_datasets(sysadmin(), args.datasets)
    insert_webhooks([{"address": "http://127.0.0.1:9/hook", "topic": "dataset/update"}])
    window = max(1, round(args.seconds))
    print(
        f"{args.updates} updates of {args.datasets} datasets over "
        f"{args.seconds:g} s, one webhook on dataset/update"
    )
    off, off_stands, off_took = burst(datasets, args.updates, args.seconds, 0)
    on, on_stands, on_took = burst(datasets, args.updates, args.seconds, window)
    print(f"coalesce_seconds=0:  {off:6d} deliveries  (burst took {off_took:.0f} s)")
    print(
        f"coalesce_seconds={window}: {on:6d} deliveries  (burst took {on_took:.0f} s)"
        f"  x{off / max(on, 1):.1f} fewer"
    )
    print(
        f"updates accounted for: {off_stands} and {on_stands} of {args.updates} "
        f"{verdict(off_stands == on_stands == args.updates)}"
    )
    # Each dataset's updates open a window when none is open: at most one
    # delivery per dataset per window the burst spanned.
    windows = math.ceil(on_took / window)
    print(
        f"off sends one per update: {verdict(off == args.updates)}; on sends at "
        f"most one per dataset and window ({windows} window(s) of {window} s: "
        f"<= {args.datasets * windows}): {verdict(on <= args.datasets * windows)}"
    )


if __name__ == "__main__":
    main()
