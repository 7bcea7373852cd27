"""Rate ceilings: how fast two workers together send to one receiver.

    python bench/rate_per_host.py [--rate 20] [--deliveries 600] [--workers 2]
    python bench/rate_per_host.py --per webhook [--rate 20] [--deliveries 600]

``--per host`` (the default): with ``ckanext.webhooks.max_rate_per_host =
R``, two stock ``ckan jobs worker`` processes deliver ``--deliveries`` POSTs
to one receiver host on 127.0.0.1 (``--webhooks`` webhooks at their own
paths, times as many events).

``--per webhook``: one webhook, whose receiver negotiates R a second (``R x
60`` per minute) in the consent handshake (``WebHook-Allowed-Rate``, with
``ckanext.webhooks.verification = all``); the per-host ceiling is off.

The receiver runs in this process and notes the arrival time of every
request, so the figures are what the receiver saw:

* arrivals per second (a histogram from the first arrival);
* the overall rate, first to last arrival;
* the most arrivals in any window of one second (sliding, not aligned).

Targets: the overall rate and the busiest second within +10% of R; nothing
dropped (every delivery arrives once, none twice, none left pending).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import threading
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

TOLERANCE = 0.10
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class ArrivalLog:
    """A keep-alive HTTP/1.1 receiver (asyncio, in a thread of this process)
    that notes when each POST arrived and under which (webhook-id, path).
    It consents to the ``OPTIONS`` handshake, allowing ``allowed_rate`` a
    minute if given."""

    def __init__(self, allowed_rate: int | None = None) -> None:
        consent = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
        consent += b"WebHook-Allowed-Origin: *\r\n"
        if allowed_rate:
            consent += b"WebHook-Allowed-Rate: %d\r\n" % allowed_rate
        self.consent = consent + b"\r\n"
        self.times: list[float] = []
        self.keys: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.time()
                lines = head.split(b"\r\n")
                length, webhook_id = 0, b""
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"webhook-id":
                        webhook_id = value.strip()
                if length:
                    await reader.readexactly(length)
                method, path = lines[0].split(b" ")[:2]
                if method == b"OPTIONS":
                    writer.write(self.consent)
                    continue
                with self._lock:
                    self.times.append(arrived)
                    self.keys.append((webhook_id, path))
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    def count(self) -> int:
        with self._lock:
            return len(self.times)

    def snapshot(self) -> tuple[list[float], list[tuple[bytes, bytes]]]:
        with self._lock:
            return list(self.times), list(self.keys)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def busiest_second(times: list[float]) -> tuple[int, float]:
    """The most arrivals in any window [t, t + 1 s) that starts at an arrival,
    and where that window starts (seconds after the first arrival)."""
    ordered = sorted(times)
    best, start = 0, 0.0
    for i, t in enumerate(ordered):
        count = bisect.bisect_left(ordered, t + 1.0) - i
        if count > best:
            best, start = count, t - ordered[0]
    return best, start


def close_gaps(times: list[float], interval: float) -> int:
    """How many arrivals came less than half a slot after the one before."""
    ordered = sorted(times)
    return sum(1 for a, b in itertools.pairwise(ordered) if b - a < interval / 2)


def histogram(times: list[float]) -> list[int]:
    """Arrivals in each whole second after the first one."""
    if not times:
        return []
    start = min(times)
    counts = [0] * (int(max(times) - start) + 1)
    for t in times:
        counts[int(t - start)] += 1
    return counts


def wait_for(receiver: ArrivalLog, total: int, timeout: float) -> None:
    """Until ``total`` arrived, or nothing new came for ``timeout`` seconds."""
    last_count, last_change = -1, time.monotonic()
    while receiver.count() < total:
        now = time.monotonic()
        if receiver.count() != last_count:
            last_count, last_change = receiver.count(), now
        elif now - last_change > timeout:
            return
        time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    per_webhook = args.per == "webhook"
    ini = ini_with(
        **{
            "ckanext.webhooks.max_rate_per_host": 0 if per_webhook else args.rate,
            "ckanext.webhooks.verification": "all" if per_webhook else "none",
            "ckanext.webhooks.concurrency": 50,
        }
    )
    load_ckan(ini)
    reset_state()
    admin = sysadmin()
    datasets = create_datasets(admin, 1)
    events = args.deliveries // args.webhooks
    total = events * args.webhooks
    receiver = ArrivalLog(allowed_rate=args.rate * 60 if per_webhook else None)
    try:
        insert_webhooks(
            [
                {"address": f"{receiver.url}/hook/{n}", "owner_id": admin["id"]}
                for n in range(args.webhooks)
            ]
        )
        pool = [Worker(ini, log_name=f"rate-per-host-{n}") for n in range(args.workers)]
        try:
            for worker in pool:
                worker.wait_ready()
            insert_events(datasets, events)
            woken_at = wake_and_wait_for_start()
            # A second wake-up while the first job runs gives the other
            # worker a job too: both send to the host at once.
            from ckanext.webhooks.delivery import wake_workers

            wake_workers()
            wait_for(receiver, total, timeout=30.0)
            deadline = time.monotonic() + 30
            while delivery_outcomes().get("pending") and time.monotonic() < deadline:
                time.sleep(0.2)
            outcomes = delivery_outcomes()
        finally:
            for worker in pool:
                worker.stop()
        times, keys = receiver.snapshot()
    finally:
        receiver.stop()
    return {
        "total": total,
        "events": events,
        "times": times,
        "unique": len(set(keys)),
        "duplicates": len(keys) - len(set(keys)),
        "outcomes": outcomes,
        "woken_at": woken_at,
        "horses": sum(len(w.horse_peak_kb) for w in pool),
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> bool:
    rate, times, total = args.rate, result["times"], result["total"]
    ceiling = rate * (1 + TOLERANCE)
    counts = histogram(times)
    span = (max(times) - min(times)) if len(times) > 1 else 0.0
    # n arrivals span n - 1 intervals: the rate they were sent at.
    overall = (len(times) - 1) / span if span else float("inf")
    busiest, busiest_at = busiest_second(times)
    print(
        f"load: {result['events']} events x {args.webhooks} webhooks = {total} "
        f"deliveries to one host, {args.workers} workers "
        f"({result['horses']} delivery jobs ran)"
    )
    if args.per == "webhook":
        print(f"negotiated WebHook-Allowed-Rate = {rate * 60}/min ({rate}/s)")
    else:
        print(f"configured ckanext.webhooks.max_rate_per_host = {rate}/s")
    print("arrivals per second (from the first arrival):")
    scale = max(counts, default=1) or 1
    for second, count in enumerate(counts):
        bar = "#" * round(40 * count / scale)
        flag = "  over" if count > ceiling else ""
        print(f"  {second:>4}s {count:>5}  {bar}{flag}")
    first_wait = min(times) - result["woken_at"] if times else float("nan")
    print(f"first arrival {first_wait:.2f} s after the wake-up; span {span:.2f} s")
    print()
    ok_overall = overall <= ceiling
    ok_busiest = busiest <= ceiling
    complete = (
        len(times) == total
        and result["unique"] == total
        and result["duplicates"] == 0
        and not result["outcomes"].get("pending")
    )
    print(
        f"overall rate:        {overall:7.2f}/s  vs {rate}/s (<= {ceiling:.1f}) "
        f"{verdict(ok_overall)}"
    )
    print(
        f"busiest 1 s window:  {busiest:7d}    vs {rate}/s (<= {ceiling:.1f}) "
        f"{verdict(ok_busiest)} (from {busiest_at:.2f} s)"
    )
    print(
        f"nothing dropped:     {result['unique']}/{total} delivered, "
        f"{result['duplicates']} duplicates, outcomes {result['outcomes']} "
        f"{verdict(complete)}"
    )
    print(
        f"(info) use of the allowance: {overall / rate:.0%} of {rate}/s overall; "
        f"busiest whole second {max(counts, default=0)}; "
        f"{close_gaps(times, 1 / rate)} arrivals under half a slot "
        f"({500 / rate:.0f} ms) after the previous one"
    )
    return ok_overall and ok_busiest and complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--deliveries", type=int, default=600)
    parser.add_argument("--webhooks", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per", choices=("host", "webhook"), default="host")
    args = parser.parse_args()
    if args.per == "webhook":
        args.webhooks = 1
        header("rate per webhook: two stock workers, a receiver's negotiated rate")
    else:
        header("rate per host: two stock workers, one receiver host, a ceiling")
    result = run(args)
    met = report(args, result)
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
