"""What an outcome does to a delivery: the log entry, a retry, or an end.

A batch of outcomes is written with one statement per table, the rows passed
as arrays: row-by-row executemany costs a round trip per row, which made
recording slower than sending. What an outcome does to the webhook itself
(failure counts, disabling) is ``health.py``.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from typing import Any

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks import metrics
from ckanext.webhooks.delivery import exchange, health
from ckanext.webhooks.delivery.claiming import Claim
from ckanext.webhooks.http import Outcome
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import PING, AttemptOutcome, DeliveryStatus

__all__ = ["Verdict", "judge", "record"]

MAX_RETRY_AFTER = 24 * 3600

_INSERT_ATTEMPTS = text(
    """
    INSERT INTO webhook_attempt
        (delivery_id, webhook_id, event_id, topic, attempt, created,
         status_code, error, latency_ms, response, outcome,
         request_headers, request_body, response_headers)
    SELECT u.delivery_id, u.webhook_id, u.event_id, u.topic, u.attempt, :now,
           u.status_code, u.error, u.latency_ms, u.response, u.outcome,
           u.request_headers, u.request_body, u.response_headers
    FROM unnest(
        CAST(:delivery_id AS bigint[]), CAST(:webhook_id AS text[]),
        CAST(:event_id AS text[]), CAST(:topic AS text[]),
        CAST(:attempt AS integer[]), CAST(:status_code AS integer[]),
        CAST(:error AS text[]), CAST(:latency_ms AS integer[]),
        CAST(:response AS text[]), CAST(:outcome AS text[]),
        CAST(:request_headers AS text[]), CAST(:request_body AS text[]),
        CAST(:response_headers AS text[])
    ) AS u(delivery_id, webhook_id, event_id, topic, attempt, status_code,
           error, latency_ms, response, outcome, request_headers, request_body,
           response_headers)
    """
)

_UPDATE_DELIVERIES = text(
    """
    UPDATE webhook_delivery d
    SET status = u.status, next_attempt_at = u.next_attempt_at,
        lease_until = NULL, updated = :now,
        last_status_code = u.status_code, last_error = u.error
    FROM unnest(
        CAST(:delivery_id AS bigint[]), CAST(:status AS text[]),
        CAST(:next_attempt_at AS timestamp[]),
        CAST(:status_code AS integer[]), CAST(:error AS text[])
    ) AS u(id, status, next_attempt_at, status_code, error)
    WHERE d.id = u.id
    """
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: DeliveryStatus
    outcome: AttemptOutcome
    next_attempt_at: datetime.datetime | None = None


def judge(
    claim: Claim, outcome: Outcome, schedule: list[float], now: datetime.datetime
) -> Verdict:
    """Success, a retry after the scheduled delay, or the end of the road."""
    if outcome.ok:
        return Verdict(DeliveryStatus.SUCCEEDED, AttemptOutcome.SUCCESS)
    if outcome.status == 410:
        return Verdict(DeliveryStatus.FAILED, AttemptOutcome.GONE)
    if claim.event.topic == PING:  # answered at once, never retried
        return Verdict(DeliveryStatus.FAILED, AttemptOutcome.FAILED)
    delay = _retry_delay(claim.attempt, outcome, schedule)
    if delay is None:
        return Verdict(DeliveryStatus.FAILED, AttemptOutcome.GIVEN_UP)
    later = now + datetime.timedelta(seconds=delay)
    return Verdict(DeliveryStatus.PENDING, AttemptOutcome.RETRY, later)


def _retry_delay(attempt: int, outcome: Outcome, schedule: list[float]) -> float | None:
    if attempt > len(schedule):
        return None
    if outcome.retry_after is not None and outcome.status in (429, 503):
        return min(outcome.retry_after, MAX_RETRY_AFTER)
    delay = schedule[attempt - 1]
    return delay + random.uniform(0, delay * 0.1)


def _stored_response(outcome: Outcome) -> str | None:
    """The kept part of the answer; None when withheld (a non-public receiver's
    answer is nobody's business: it could be an internal service's)."""
    if outcome.body_withheld:
        return None
    # PostgreSQL text cannot hold NUL characters.
    return outcome.body.decode("utf-8", "replace").replace("\x00", "\ufffd")


def record(
    results: list[tuple[Claim, Outcome]],
    skipped: list[Claim],
    schedule: list[float],
    max_failures: int,
    *,
    commit: bool = True,
) -> list[Verdict]:
    """Write the attempts, move each delivery on, update webhook health."""
    now = utcnow()
    caps = (cfg.max_logged_request_bytes(), cfg.max_response_bytes())
    attempts, updates, verdicts = [], [], []
    for claim, outcome in results:
        verdict = judge(claim, outcome, schedule, now)
        verdicts.append(verdict)
        attempts.append(_attempt_row(claim, outcome, verdict, caps))
        updates.append(
            _delivery_row(claim, verdict.status, verdict.next_attempt_at, outcome)
        )
    for claim in skipped:
        updates.append(_delivery_row(claim, DeliveryStatus.SKIPPED, None, None))
    # The time is one value for the whole batch, not an array of copies.
    if attempts:
        model.Session.execute(_INSERT_ATTEMPTS, {**_columns(attempts), "now": now})
    if updates:
        model.Session.execute(_UPDATE_DELIVERIES, {**_columns(updates), "now": now})
    health.update(
        [
            (claim, outcome, v)
            for (claim, outcome), v in zip(results, verdicts, strict=True)
        ],
        max_failures,
        now,
    )
    if commit:
        model.Session.commit()
    metrics.count_attempts((a["outcome"], a["latency_ms"]) for a in attempts)
    return verdicts


def _attempt_row(
    claim: Claim, outcome: Outcome, verdict: Verdict, caps: tuple[int, int]
) -> dict[str, Any]:
    return {
        "delivery_id": claim.delivery_id,
        "webhook_id": claim.webhook.id,
        "event_id": claim.event.id,
        "topic": claim.event.topic,
        "attempt": claim.attempt,
        "status_code": outcome.status,
        "error": outcome.error,
        "latency_ms": outcome.latency_ms,
        "response": _stored_response(outcome),
        "outcome": verdict.outcome.value,
        **_exchange_columns(claim, outcome, caps),
    }


def _exchange_columns(
    claim: Claim, outcome: Outcome, caps: tuple[int, int]
) -> dict[str, str | None]:
    """The request as sent and the answer's headers, as the log keeps them."""
    request_cap, response_cap = caps
    columns = {
        "request_headers": None,
        "request_body": None,
        "response_headers": exchange.logged_response_headers(outcome, response_cap),
    }
    if claim.sent:
        headers, body = claim.sent
        columns["request_headers"] = exchange.logged_request_headers(headers)
        columns["request_body"] = exchange.logged_request_body(body, request_cap)
    return columns


def _delivery_row(
    claim: Claim,
    status: DeliveryStatus,
    next_attempt_at: datetime.datetime | None,
    outcome: Outcome | None,
) -> dict[str, Any]:
    return {
        "delivery_id": claim.delivery_id,
        "status": status.value,
        "next_attempt_at": next_attempt_at,
        "status_code": outcome.status if outcome else None,
        "error": outcome.error if outcome else None,
    }


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as one list per column, for the unnest() statements above."""
    return {key: [row[key] for row in rows] for key in rows[0]}
