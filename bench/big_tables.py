"""Big tables: the hot queries on small tables and with years of history.

    python bench/big_tables.py [--events 1000000] [--attempts-per-event 10]

Times claiming, expansion, ``webhook_delivery_list`` and the dispatcher's
check on small tables, then again after filling the history (by default
1,000,000 delivered events and 10,000,000 log entries, written with
``generate_series``: a few minutes and some GB), each figure beside its
small-table baseline, with the plan PostgreSQL chose. Then it prunes the
whole history with ``ckan webhooks prune``'s code while a second connection
claims and releases deliveries every 50 ms, and reports the longest prune
batch and the longest claim: no lock may stall delivery for more than 1 s.

Run it on a database of its own, e.g.
``CKAN_SQLALCHEMY_URL=postgresql://postgres@127.0.0.1:5432/ckan_webhooks_bench_big``.
"""

from __future__ import annotations

import argparse
import datetime
import threading
import time
from collections.abc import Callable
from typing import Any

from common import (
    create_datasets,
    header,
    insert_events,
    insert_webhooks,
    load_ckan,
    median,
    reset_state,
    setup_done,
    sysadmin,
    verdict,
)

RATIO_TARGET = 2.0
STALL_TARGET = 1.0
SAMPLES = 41


def _sql(statement: str, params: dict | None = None) -> Any:
    import ckan.model as model
    from sqlalchemy import text

    result = model.Session.execute(text(statement), params or {})
    model.Session.commit()
    return result


def _timed(action: Callable[[], Any], undo: Callable[[], Any]) -> float:
    """Median seconds of ``action`` over SAMPLES runs, ``undo`` after each."""
    times = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
        undo()
    return median(times)


class Probes:
    """The four hot paths, each with a way to put the tables back."""

    def __init__(self, hook_id: str, dataset: dict) -> None:
        self.hook_id = hook_id
        self.dataset = dataset

    def claim(self) -> float:
        from ckanext.webhooks.delivery.claiming import claim_due, lease_for

        _sql(
            "UPDATE webhook_delivery SET status = 'pending', lease_until = NULL, "
            "next_attempt_at = now() AT TIME ZONE 'utc' - interval '1 s' "
            "WHERE id IN (SELECT id FROM webhook_delivery ORDER BY id DESC LIMIT 100)"
        )
        seconds = _timed(
            lambda: claim_due(100, lease_for(5)),
            lambda: _sql(
                "UPDATE webhook_delivery SET lease_until = NULL "
                "WHERE status = 'pending'"
            ),
        )
        _sql(
            "UPDATE webhook_delivery SET status = 'succeeded' WHERE status = 'pending'"
        )
        return seconds

    def expansion(self) -> float:
        from ckanext.webhooks.delivery import expand_events

        def add() -> None:
            insert_events([self.dataset], 10)

        def undo() -> None:
            _sql(
                "UPDATE webhook_delivery SET status = 'succeeded' "
                "WHERE status = 'pending'"
            )
            add()

        add()
        seconds = _timed(expand_events, undo)
        expand_events()
        undo()
        expand_events()
        _sql(
            "UPDATE webhook_delivery SET status = 'succeeded' WHERE status = 'pending'"
        )
        return seconds

    def delivery_list(self) -> float:
        import ckan.plugins.toolkit as tk

        return _timed(
            lambda: tk.get_action("webhook_delivery_list")(
                {"ignore_auth": True}, {"id": self.hook_id, "limit": 100}
            ),
            lambda: None,
        )

    def dispatcher(self) -> float:
        from ckanext.webhooks.delivery import pending_work

        return _timed(pending_work, lambda: None)

    def all(self) -> dict[str, float]:
        return {
            "claim 100 due deliveries": self.claim(),
            "expand 10 new events": self.expansion(),
            "webhook_delivery_list (100 newest)": self.delivery_list(),
            "dispatcher's check": self.dispatcher(),
        }


PLANS = {
    "claim": "SELECT id FROM webhook_delivery WHERE status = 'pending' "
    "AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now()) "
    "ORDER BY next_attempt_at, id LIMIT 100 FOR UPDATE SKIP LOCKED",
    "expansion": "SELECT id FROM webhook_event WHERE NOT expanded "
    "ORDER BY sequence LIMIT 500 FOR UPDATE SKIP LOCKED",
    "delivery list": "SELECT * FROM webhook_attempt WHERE webhook_id = :hook "
    "ORDER BY id DESC LIMIT 100",
    "dispatcher": "SELECT count(*) FROM webhook_event WHERE NOT expanded",
}


def fill_history(
    hook_id: str, dataset: dict, events: int, per_event: int, first: int
) -> None:
    """``events`` delivered events, one delivery each, ``per_event`` log entries."""
    old = datetime.datetime.utcnow() - datetime.timedelta(days=400)
    _sql(
        """
        INSERT INTO webhook_event (id, topic, entity_type, entity_id, package_id,
            organization_id, private, snapshot, created, expanded)
        SELECT 'evt_old' || n, 'dataset/update', 'dataset', :pkg, :pkg, :org,
               false, '{}', :old + n * interval '10 ms', true
        FROM generate_series(:first + 1, :first + :events) n
        """,
        {
            "pkg": dataset["id"],
            "org": dataset["owner_org"],
            "old": old,
            "events": events,
            "first": first,
        },
    )
    _sql(
        """
        INSERT INTO webhook_delivery (event_id, webhook_id, status, attempts,
            next_attempt_at, created, updated)
        SELECT id, :hook, 'succeeded', :per, NULL, created, created
        FROM webhook_event e WHERE id LIKE 'evt_old%'
          AND NOT EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.event_id = e.id)
        """,
        {"hook": hook_id, "per": per_event},
    )
    _sql(
        """
        INSERT INTO webhook_attempt (delivery_id, webhook_id, event_id, topic,
            attempt, created, status_code, latency_ms, response, outcome)
        SELECT d.id, d.webhook_id, d.event_id, 'dataset/update', a, d.created,
               CASE WHEN a = :per THEN 200 ELSE 503 END, 12, '',
               CASE WHEN a = :per THEN 'success' ELSE 'retry scheduled' END
        FROM webhook_delivery d, generate_series(1, :per) a
        WHERE d.event_id LIKE 'evt_old%'
          AND NOT EXISTS (SELECT 1 FROM webhook_attempt t WHERE t.delivery_id = d.id)
        """,
        {"per": per_event},
    )
    _sql("ANALYZE webhook_event; ANALYZE webhook_delivery; ANALYZE webhook_attempt")


def prune_under_load() -> tuple[dict[str, int], float, float, float]:
    """Prune everything old while claims run; (counts, seconds, longest batch,
    longest claim)."""
    import ckan.model as model
    from sqlalchemy import event as sa_event

    from ckanext.webhooks.delivery.claiming import claim_due, lease_for, release
    from ckanext.webhooks.model import utcnow
    from ckanext.webhooks.retention import prune

    stop = threading.Event()
    claims: list[float] = []

    def claimer() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            claimed = claim_due(10, lease_for(5))
            release(claimed, utcnow())
            claims.append(time.perf_counter() - started)
            model.Session.remove()
            time.sleep(0.05)

    _sql(
        "UPDATE webhook_delivery SET status = 'pending', next_attempt_at = :t "
        "WHERE id IN (SELECT id FROM webhook_delivery ORDER BY id DESC LIMIT 10)",
        {"t": utcnow()},
    )
    batches: list[float] = []
    began: list[float] = []
    session = model.Session()
    sa_event.listen(
        session, "after_begin", lambda *a: began.append(time.perf_counter())
    )
    sa_event.listen(
        session,
        "after_commit",
        lambda s: batches.append(time.perf_counter() - began[-1]),
    )
    thread = threading.Thread(target=claimer, daemon=True)
    thread.start()
    started = time.perf_counter()
    counts = prune()
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    return counts, seconds, max(batches), max(claims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--attempts-per-event", type=int, default=10)
    args = parser.parse_args()

    header("big tables: hot queries with years of history, and prune under load")
    load_ckan()
    reset_state()
    admin = sysadmin()
    dataset = create_datasets(admin, 1)[0]
    (hook_id,) = insert_webhooks(
        [{"address": "http://127.0.0.1:9/never", "package_id": dataset["id"]}]
    )
    setup_done()
    probes = Probes(hook_id, dataset)
    # The baseline: a small history (1,000 events) of the same shape.
    fill_history(hook_id, dataset, 1000, args.attempts_per_event, first=0)
    small = probes.all()

    started = time.perf_counter()
    fill_history(hook_id, dataset, args.events, args.attempts_per_event, first=1000)
    print(
        f"filled {args.events:,} events and "
        f"{args.events * args.attempts_per_event:,} log entries "
        f"in {time.perf_counter() - started:.0f} s"
    )
    big = probes.all()
    for name, statement in PLANS.items():
        plan = _sql(f"EXPLAIN ANALYZE {statement}", {"hook": hook_id}).scalars().all()
        print(f"plan, {name}:\n    " + "\n    ".join(plan))

    for name in small:
        ratio = big[name] / small[name]
        print(
            f"{name}: {1000 * big[name]:.2f} ms with the history, "
            f"{1000 * small[name]:.2f} ms without: x{ratio:.2f} "
            f"(target <= x{RATIO_TARGET:.0f} {verdict(ratio <= RATIO_TARGET)})"
        )

    counts, seconds, batch, claim = prune_under_load()
    print(
        f"prune: {counts['attempts']:,} log entries and {counts['events']:,} events "
        f"in {seconds:.0f} s; longest batch {batch:.2f} s, longest claim meanwhile "
        f"{claim:.2f} s (target <= {STALL_TARGET:.0f} s "
        f"{verdict(max(batch, claim) <= STALL_TARGET)})"
    )
    reset_state()


if __name__ == "__main__":
    main()
