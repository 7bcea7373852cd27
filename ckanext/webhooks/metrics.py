"""Metrics in the Prometheus text format, the same for every worker.

Counters (attempts by outcome, the latency histogram, deferrals by ceiling
and host) are kept in one Redis hash, incremented with ``HINCRBY`` by
whichever worker recorded the outcome: they add up across workers and
restarts, and, unlike counts of ``webhook_attempt`` rows, never go down when
the delivery log is pruned. A Redis flush resets them to zero, which
Prometheus reads as a counter reset (``rate()`` copes). Gauges (backlog,
disabled webhooks, the pause, the heartbeat) are read from PostgreSQL through
``status.delivery_status``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import ckan.plugins.toolkit as tk

from ckanext.webhooks import status

__all__ = [
    "LATENCY_BUCKETS",
    "count_attempts",
    "count_deferrals",
    "counters_key",
    "exposition",
]

log = logging.getLogger(__name__)

# Upper bounds of the latency histogram, in seconds (+Inf is implied).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PREFIX = "ckan_webhooks_"


def counters_key() -> str:
    return f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:metrics"


def _bucket(latency_ms: int | None) -> str:
    """The field of the one (non-cumulative) bucket a latency falls in."""
    seconds = (latency_ms or 0) / 1000
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return f"latency_le:{bound}"
    return "latency_le:+Inf"


def _increment(fields: dict[str, int]) -> None:
    """Add to the shared counters; never raises (a metric is not worth a
    delivery)."""
    if not fields:
        return
    from ckan.lib.redis import connect_to_redis

    try:
        pipe = connect_to_redis().pipeline(transaction=False)
        for field, amount in fields.items():
            pipe.hincrby(counters_key(), field, amount)
        pipe.execute()
    except Exception as error:
        log.warning("webhooks: could not count in Redis: %s", error)


def count_attempts(attempts: Iterable[tuple[str, int | None]]) -> None:
    """Count recorded attempts, given as (outcome, latency in ms)."""
    fields: dict[str, int] = {}
    for outcome, latency_ms in attempts:
        for field in (f"outcome:{outcome}", _bucket(latency_ms), "latency_count"):
            fields[field] = fields.get(field, 0) + 1
        fields["latency_sum_ms"] = fields.get("latency_sum_ms", 0) + (latency_ms or 0)
    _increment(fields)


def count_deferrals(ceiling: str, hosts: Iterable[str]) -> None:
    """Count deliveries sent back to wait by a rate ceiling ("host" or
    "webhook"), per receiver host."""
    fields: dict[str, int] = {}
    for host in hosts:
        field = f"deferred:{ceiling}:{host}"
        fields[field] = fields.get(field, 0) + 1
    _increment(fields)


def _counters() -> dict[str, int] | None:
    from ckan.lib.redis import connect_to_redis

    try:
        raw = connect_to_redis().hgetall(counters_key())
    except Exception as error:
        log.warning("webhooks: could not read the counters from Redis: %s", error)
        return None
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(lines: list[str], name: str, kind: str, about: str) -> None:
    lines.append(f"# HELP {PREFIX}{name} {about}")
    lines.append(f"# TYPE {PREFIX}{name} {kind}")


def _counter_lines(lines: list[str], counters: dict[str, int]) -> None:
    from ckanext.webhooks.vocabulary import AttemptOutcome

    _family(lines, "attempts", "counter", "Delivery attempts recorded, by outcome.")
    outcomes = {o.value for o in AttemptOutcome} | {
        k.split(":", 1)[1] for k in counters if k.startswith("outcome:")
    }
    for outcome in sorted(outcomes):
        count = counters.get(f"outcome:{outcome}", 0)
        lines.append(f'{PREFIX}attempts_total{{outcome="{_label(outcome)}"}} {count}')

    _family(
        lines,
        "delivery_latency_seconds",
        "histogram",
        "Time from sending a delivery to its answer.",
    )
    cumulative = 0
    for bound in (*LATENCY_BUCKETS, "+Inf"):
        cumulative += counters.get(f"latency_le:{bound}", 0)
        lines.append(
            f'{PREFIX}delivery_latency_seconds_bucket{{le="{bound}"}} {cumulative}'
        )
    sum_seconds = counters.get("latency_sum_ms", 0) / 1000
    lines.append(f"{PREFIX}delivery_latency_seconds_sum {sum_seconds}")
    count = counters.get("latency_count", 0)
    lines.append(f"{PREFIX}delivery_latency_seconds_count {count}")

    _family(
        lines,
        "deferred",
        "counter",
        "Deliveries sent back to wait by a rate ceiling, by ceiling and host.",
    )
    for field in sorted(k for k in counters if k.startswith("deferred:")):
        _, ceiling, host = field.split(":", 2)
        lines.append(
            f'{PREFIX}deferred_total{{ceiling="{_label(ceiling)}",'
            f'host="{_label(host)}"}} {counters[field]}'
        )


_GAUGES = (
    ("events_waiting", "Events captured, not yet expanded into deliveries."),
    ("deliveries_due", "Deliveries due now, not claimed by a worker."),
    ("deliveries_retrying", "Deliveries waiting for a later retry."),
    ("deliveries_in_flight", "Deliveries claimed by a worker now."),
    ("webhooks_disabled", "Webhooks that are disabled."),
    ("webhooks_failing", "Active webhooks whose last deliveries failed."),
)


def _gauge_lines(lines: list[str], figures: dict[str, Any]) -> None:
    for name, about in _GAUGES:
        _family(lines, name, "gauge", about)
        lines.append(f"{PREFIX}{name} {figures[name]}")
    _family(
        lines,
        "oldest_waiting_age_seconds",
        "gauge",
        "Age of the oldest waiting event or due delivery (0: none).",
    )
    age = status.oldest_due_age(figures)
    lines.append(f"{PREFIX}oldest_waiting_age_seconds {age}")
    _family(lines, "paused", "gauge", "1 while a sysadmin has paused delivery.")
    lines.append(f"{PREFIX}paused {int(figures['paused'])}")
    _family(
        lines,
        "worker_seen_age_seconds",
        "gauge",
        "Seconds since a worker last took a delivery job (absent: never).",
    )
    if figures["worker_seen_age_seconds"] is not None:
        seen = figures["worker_seen_age_seconds"]
        lines.append(f"{PREFIX}worker_seen_age_seconds {seen}")
    _family(lines, "counters_available", "gauge", "0 when Redis could not be read.")


def exposition() -> str:
    """The whole scrape, in the Prometheus text format (version 0.0.4)."""
    lines: list[str] = []
    counters = _counters()
    _gauge_lines(lines, status.delivery_status(recent=False))
    lines.append(f"{PREFIX}counters_available {int(counters is not None)}")
    _counter_lines(lines, counters or {})
    return "\n".join(lines) + "\n"
