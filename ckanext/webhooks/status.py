"""The operator's figures: is delivery keeping up, what fails, who works.

The admin page, ``ckan webhooks status``, ``webhook_status_show`` and the
backlog gauges of ``/webhooks/metrics`` all read ``delivery_status``: one
statement, one round trip (the metrics leave out the last hour's figures,
the only part whose cost grows with traffic). Each figure is answered by an
index: waiting events by ``ix_webhook_event_unexpanded``, pending
deliveries by ``ix_webhook_delivery_due``, the last hour's attempts by
``ix_webhook_attempt_created``; the ``webhook`` table is read whole, and it
is the small one.
"""

from __future__ import annotations

import datetime
from typing import Any

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks import control
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import AttemptOutcome, DeliveryStatus, isoformat

__all__ = ["LIST_SIZE", "WINDOW_MINUTES", "delivery_status", "oldest_due_age"]

WINDOW_MINUTES = 60  # the chart and the success rate cover this much
LIST_SIZE = 20  # failing and disabled webhooks, busiest hosts shown at most

_PENDING = DeliveryStatus.PENDING.value
_SUCCESS = AttemptOutcome.SUCCESS.value

# Active, and its last answer was no success or events were given up since.
_FAILING = "active AND (failure_count > 0 OR last_delivery_status !~ '^2[0-9][0-9]$')"

# The backlog and the webhooks: cheap whatever the traffic (indexes on what
# waits; the webhook table is the small one).
_BACKLOG = f"""
      (SELECT count(*) FROM webhook_event WHERE NOT expanded) AS events_waiting,
      (SELECT min(created) FROM webhook_event WHERE NOT expanded)
          AS oldest_event_at,
      (SELECT count(*) FROM webhook_delivery
       WHERE status = '{_PENDING}' AND next_attempt_at <= :now
         AND (lease_until IS NULL OR lease_until < :now)) AS deliveries_due,
      (SELECT min(next_attempt_at) FROM webhook_delivery
       WHERE status = '{_PENDING}' AND next_attempt_at <= :now
         AND (lease_until IS NULL OR lease_until < :now)) AS oldest_due_at,
      (SELECT count(*) FROM webhook_delivery
       WHERE status = '{_PENDING}' AND next_attempt_at > :now
         AND attempts > 0) AS deliveries_retrying,
      (SELECT count(*) FROM webhook_delivery
       WHERE status = '{_PENDING}' AND lease_until >= :now) AS deliveries_in_flight,
      (SELECT count(*) FROM webhook WHERE NOT active) AS webhooks_disabled,
      (SELECT count(*) FROM webhook WHERE {_FAILING}) AS webhooks_failing,
      (SELECT updated FROM webhook_control WHERE name = :worker_seen)
          AS worker_seen_at,
      (SELECT json_build_object('by', value, 'since', updated)
       FROM webhook_control WHERE name = :paused) AS paused,
      (SELECT coalesce(json_agg(f ORDER BY f.failure_count DESC, f.id), '[]')
       FROM (
          SELECT id, topic, topics, receiver_host AS host, failure_count,
                 last_delivery_status, last_delivery_at
          FROM webhook WHERE {_FAILING}
          ORDER BY failure_count DESC, id LIMIT :list_size) f) AS failing,
      (SELECT coalesce(json_agg(d ORDER BY d.disabled_at DESC NULLS LAST, d.id),
                       '[]')
       FROM (
          SELECT id, topic, topics, receiver_host AS host, disabled_reason,
                 disabled_at, failure_count
          FROM webhook WHERE NOT active
          ORDER BY disabled_at DESC NULLS LAST, id LIMIT :list_size) d)
          AS disabled
"""

# The last hour's attempts: read whole, so they cost in proportion to the
# traffic (about a second per million attempts an hour, measured here).
_RECENT = f"""
      (SELECT count(*) FROM recent) AS attempts,
      (SELECT count(*) FROM recent WHERE outcome = '{_SUCCESS}') AS successes,
      (SELECT coalesce(json_agg(m ORDER BY m.minute), '[]') FROM (
          SELECT date_trunc('minute', created) AS minute, count(*) AS attempts,
                 count(*) FILTER (WHERE outcome = '{_SUCCESS}') AS successes
          FROM recent GROUP BY 1) m) AS per_minute,
      (SELECT coalesce(json_agg(h ORDER BY h.attempts DESC, h.host), '[]') FROM (
          SELECT w.receiver_host AS host, count(*) AS attempts,
                 count(*) FILTER (WHERE r.outcome = '{_SUCCESS}') AS successes
          FROM recent r JOIN webhook w ON w.id = r.webhook_id
          GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :list_size) h) AS busiest_hosts
"""

_STATUS = text(
    f"""
    WITH recent AS (
        SELECT webhook_id, created, outcome FROM webhook_attempt
        WHERE created >= :since
    )
    SELECT {_BACKLOG}, {_RECENT}
    """
)
_BACKLOG_ONLY = text(f"SELECT {_BACKLOG}")


def _age(moment: datetime.datetime | None, now: datetime.datetime) -> float | None:
    if moment is None:
        return None
    return round(max(0.0, (now - moment).total_seconds()), 3)


def _moment(value: Any) -> str | None:
    """A timestamp of the JSON columns (ISO text, no zone) in the API's format."""
    if not value:
        return None
    return isoformat(datetime.datetime.fromisoformat(value))


def _per_minute(rows: list[dict[str, Any]], now: datetime.datetime) -> list[dict]:
    """One entry per minute of the window, oldest first, empty minutes too."""
    counted = {
        datetime.datetime.fromisoformat(r["minute"]): (r["attempts"], r["successes"])
        for r in rows
    }
    this_minute = now.replace(second=0, microsecond=0)
    minutes = []
    for back in range(WINDOW_MINUTES - 1, -1, -1):
        minute = this_minute - datetime.timedelta(minutes=back)
        attempts, successes = counted.get(minute, (0, 0))
        minutes.append(
            {"minute": isoformat(minute), "attempts": attempts, "successes": successes}
        )
    return minutes


def delivery_status(recent: bool = True) -> dict[str, Any]:
    """Every figure of the operator's view, as plain JSON-able data; without
    ``recent``, only the backlog and the webhooks (what metrics scrapes
    need: cheap however busy the site)."""
    now = utcnow()
    row = (
        model.Session.execute(
            _STATUS if recent else _BACKLOG_ONLY,
            {
                "now": now,
                "since": now - datetime.timedelta(minutes=WINDOW_MINUTES),
                "list_size": LIST_SIZE,
                "worker_seen": control.WORKER_SEEN,
                "paused": control.PAUSED,
            },
        )
        .mappings()
        .one()
    )
    model.Session.commit()
    paused = row["paused"]
    oldest_event_age = _age(row["oldest_event_at"], now)
    oldest_due_age = _age(row["oldest_due_at"], now)
    ages = [a for a in (oldest_event_age, oldest_due_age) if a is not None]
    figures = {
        "paused": paused is not None,
        "paused_by": paused["by"] if paused else None,
        "paused_since": _moment(paused["since"]) if paused else None,
        "events_waiting": row["events_waiting"],
        "deliveries_due": row["deliveries_due"],
        "deliveries_retrying": row["deliveries_retrying"],
        "deliveries_in_flight": row["deliveries_in_flight"],
        "oldest_event_age_seconds": oldest_event_age,
        "oldest_due_age_seconds": oldest_due_age,
        "oldest_waiting_age_seconds": max(ages) if ages else None,
        "webhooks_failing": row["webhooks_failing"],
        "webhooks_disabled": row["webhooks_disabled"],
        "failing": [
            {**f, "last_delivery_at": _moment(f["last_delivery_at"])}
            for f in row["failing"]
        ],
        "disabled": [
            {**d, "disabled_at": _moment(d["disabled_at"])} for d in row["disabled"]
        ],
        "worker_seen_at": isoformat(row["worker_seen_at"]),
        "worker_seen_age_seconds": _age(row["worker_seen_at"], now),
        "measured_at": isoformat(now),
    }
    if recent:
        figures.update(
            {
                "window_minutes": WINDOW_MINUTES,
                "attempts_last_hour": row["attempts"],
                "successes_last_hour": row["successes"],
                "success_rate": (
                    round(row["successes"] / row["attempts"], 4)
                    if row["attempts"]
                    else None
                ),
                "per_minute": _per_minute(row["per_minute"], now),
                "busiest_hosts": row["busiest_hosts"],
            }
        )
    return figures


def oldest_due_age(figures: dict[str, Any]) -> float:
    """The age that health checks compare with their threshold (0: none)."""
    return figures["oldest_waiting_age_seconds"] or 0.0
