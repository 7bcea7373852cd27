"""Many owners per event: reader classes against one owner, in the same run.

    python bench/many_owners.py [--events 50] [--webhooks 100] [--owners 100]
                                [--fanout 1000]

Stock ``ckan jobs worker``s deliver to one local keep-alive receiver (its own
process), as in throughput.py:

* events x webhooks deliveries (default 5,000) whose webhooks all belong to
  one user, before and after the same load with ``--owners`` distinct users
  per event: that must reach 0.7 of the one owner's rate (their mean);
* one event to ``--fanout`` webhooks of as many distinct users: all must
  have arrived within 3 s of the wake-up;
* all three again with ``ckanext.webhooks.render_per_owner = true``
  (``package_show`` once per owner, the behaviour before reader classes), to
  compare.

Owners are plain users and the datasets public, so each event is rendered for
one class of readers; access is still decided for every owner, in SQL.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import (
    create_datasets,
    header,
    ini_with,
    insert_webhooks,
    load_ckan,
    reset_state,
    sysadmin,
    users,
    verdict,
)
from throughput import describe, worker_run

from tests.support.receivers.counting import ReceiverProcess

TARGET_RATIO = 0.7  # many owners per event against one owner, same run
TARGET_FANOUT_SECONDS = 3.0  # one event to --fanout distinct owners


def deliver(
    ini: Path,
    receiver: ReceiverProcess,
    datasets: list[dict[str, Any]],
    owners: list[str],
    events: int,
    webhooks: int,
) -> dict[str, Any]:
    """``events`` x ``webhooks`` with webhook owners taken round-robin from
    ``owners``, by one fresh worker."""
    reset_state()
    insert_webhooks(
        [
            {
                "address": f"{receiver.url}/hook/{n}",
                "owner_id": owners[n % len(owners)],
            }
            for n in range(webhooks)
        ]
    )
    return worker_run(ini, receiver, datasets, events, webhooks, 1)


def measure(
    ini: Path,
    receiver: ReceiverProcess,
    datasets: list[dict[str, Any]],
    people: list[str],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """With ``ini``: one owner before and after (the load on the machine
    drifts: their mean is the baseline), many owners per event, the fan-out."""
    load = (args.events, args.webhooks)
    runs = {"before": deliver(ini, receiver, datasets, people[:1], *load)}
    runs["many"] = deliver(ini, receiver, datasets, people[: args.owners], *load)
    runs["fanout"] = deliver(
        ini, receiver, datasets[:1], people[: args.fanout], 1, args.fanout
    )
    runs["after"] = deliver(ini, receiver, datasets, people[:1], *load)
    return runs


def one_owner_rate(runs: dict[str, dict[str, Any]]) -> float:
    return (runs["before"]["rate"] + runs["after"]["rate"]) / 2


def report(title: str, runs: dict[str, dict[str, Any]], owners: int) -> None:
    print(title)
    describe("  1 owner (before)", runs["before"])
    describe(f"  {owners} owners per event", runs["many"])
    describe(f"  1 event x {runs['fanout']['total']} owners", runs["fanout"])
    describe("  1 owner (after)", runs["after"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--no-per-owner", action="store_true", help="skip the render_per_owner runs"
    )
    args = parser.parse_args()

    header("many owners: one rendering per class of readers vs one owner")
    options = {"ckanext.webhooks.concurrency": args.concurrency}
    classes_ini = ini_with(**options)
    per_owner_ini = ini_with(**options, **{"ckanext.webhooks.render_per_owner": True})
    load_ckan(classes_ini)
    reset_state()
    datasets = create_datasets(sysadmin(), args.datasets)
    people = users(max(args.owners, args.fanout))
    print(
        f"load: {args.events} events over {args.datasets} public datasets x "
        f"{args.webhooks} webhooks = {args.events * args.webhooks} deliveries; "
        f"1 event x {args.fanout} webhooks; concurrency {args.concurrency}"
    )

    with ReceiverProcess() as receiver:
        classes = measure(classes_ini, receiver, datasets, people, args)
        per_owner = None
        if not args.no_per_owner:
            per_owner = measure(per_owner_ini, receiver, datasets, people, args)
    reset_state()

    report(
        "reader classes (render_per_owner = false, the default)", classes, args.owners
    )
    if per_owner:
        report(
            "render_per_owner = true (package_show per owner)", per_owner, args.owners
        )
    print()
    targets(args, classes, per_owner)


def targets(
    args: argparse.Namespace,
    classes: dict[str, dict[str, Any]],
    per_owner: dict[str, dict[str, Any]] | None,
) -> None:
    one, many = one_owner_rate(classes), classes["many"]["rate"]
    print(
        f"target: {args.owners} owners per event at least {TARGET_RATIO} of one "
        f"owner: {many:.0f}/s against {one:.0f}/s (mean) = {many / one:.2f} "
        f"{verdict(many / one >= TARGET_RATIO)}"
    )
    fanout = classes["fanout"]
    met = (
        fanout["unique"] == fanout["total"]
        and fanout["seconds"] <= TARGET_FANOUT_SECONDS
    )
    print(
        f"target: 1 event x {args.fanout} webhooks of {args.fanout} users, all "
        f"arrived in {fanout['seconds']:.2f} s (at most "
        f"{TARGET_FANOUT_SECONDS:.0f} s), {fanout['unique']}/{fanout['total']} "
        f"{verdict(met)}"
    )
    if per_owner:
        ratio = per_owner["many"]["rate"] / one_owner_rate(per_owner)
        print(
            f"render_per_owner = true, for comparison: {args.owners} owners "
            f"{ratio:.2f} of one owner; the fan-out in "
            f"{per_owner['fanout']['seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
