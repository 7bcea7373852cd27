"""Throughput against ckanext.webhooks.concurrency, drawn to docs/throughput.png.

    python bench/concurrency_chart.py [--events 30] [--webhooks 100]

For each concurrency (1, 5, 10, 25, 50, 100) a fresh stock worker delivers
events x webhooks deliveries (default 3,000) to the local keep-alive
receiver, timed as in throughput.py. A plain requests.Session loop to the
same receiver, measured before and after, is drawn as the reference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import (
    REPO,
    create_datasets,
    header,
    ini_with,
    insert_webhooks,
    load_ckan,
    machine,
    reset_state,
    sysadmin,
)
from throughput import plain_loop, sample_body, worker_run

from tests.support.receivers.counting import ReceiverProcess

LEVELS = (1, 5, 10, 25, 50, 100)


def draw(
    path: Path, results: list[tuple[int, float]], plain: float, total: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [level for level, _ in results]
    rates = [rate for _, rate in results]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    axes.plot(levels, rates, marker="o", label="one stock `ckan jobs worker`")
    for level, rate in results:
        axes.annotate(
            f"{rate:.0f}",
            (level, rate),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    axes.axhline(
        plain, linestyle="--", color="grey", label="plain requests.Session loop"
    )
    axes.axhline(500, linestyle=":", color="red", label="target: 500 deliveries/s")
    axes.set_xscale("log")
    axes.set_xticks(levels)
    axes.set_xticklabels([str(level) for level in levels])
    axes.set_xlabel("ckanext.webhooks.concurrency (threads per job)")
    axes.set_ylabel("deliveries per second")
    axes.set_ylim(bottom=0)
    axes.set_title(f"Delivery throughput, {total} deliveries per point", fontsize=11)
    axes.legend(loc="lower right", fontsize=8)
    figure.text(0.01, 0.01, machine(), fontsize=6, color="grey")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "throughput.png")
    args = parser.parse_args()

    header("throughput against ckanext.webhooks.concurrency")
    load_ckan()
    reset_state()
    admin = sysadmin()
    datasets = create_datasets(admin, 10)
    total = args.events * args.webhooks
    results = []
    with ReceiverProcess() as receiver:
        insert_webhooks(
            [
                {"address": f"{receiver.url}/hook/{n}", "owner_id": admin["id"]}
                for n in range(args.webhooks)
            ]
        )
        body = sample_body(datasets[0])
        plain_before = plain_loop(receiver, body, total)
        for level in LEVELS:
            ini = ini_with(**{"ckanext.webhooks.concurrency": level})
            run = worker_run(ini, receiver, datasets, args.events, args.webhooks, 1)
            results.append((level, run["rate"]))
            print(
                f"concurrency {level:>3}: {run['received']}/{total} in "
                f"{run['seconds']:6.2f} s = {run['rate']:6.0f} deliveries/s",
                flush=True,
            )
        plain_after = plain_loop(receiver, body, total)
    reset_state()
    plain = (plain_before + plain_after) / 2
    print(
        f"plain requests.Session loop: {plain:.0f}/s "
        f"(before {plain_before:.0f}/s, after {plain_after:.0f}/s)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    draw(args.output, results, plain, total)
    print(f"chart: {args.output}")


if __name__ == "__main__":
    main()
