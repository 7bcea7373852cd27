"""What outcomes do to a webhook: its last status, failure count, and disabling.

A success resets the failure count; an event given up counts one failure, and
``max_failures`` in a row disable the webhook; a 410 Gone disables it at once
(final for anonymous webhooks, see ``logic.auth.may_undo_gone``).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import ckan.model as model
from sqlalchemy import text

from ckanext.webhooks.http import Outcome
from ckanext.webhooks.vocabulary import GONE_REASON, AttemptOutcome

if TYPE_CHECKING:
    from ckanext.webhooks.delivery.claiming import Claim
    from ckanext.webhooks.delivery.outcomes import Verdict

__all__ = ["update"]

# Locked in id order first: workers recording the same webhooks at the same
# time then wait for each other instead of deadlocking.
_LOCK = text(
    "SELECT id FROM webhook WHERE id = ANY(CAST(:ids AS text[])) "
    "ORDER BY id FOR NO KEY UPDATE"
)

_LAST_DELIVERY = text(
    """
    UPDATE webhook w
    SET last_delivery_at = :now, last_delivery_status = u.status
    FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[])) AS u(id, status)
    WHERE w.id = u.id
    """
)

_RESET_FAILURES = text(
    "UPDATE webhook SET failure_count = 0 WHERE id = ANY(CAST(:ids AS text[]))"
)

_COUNT_FAILURES = text(
    """
    UPDATE webhook w SET failure_count = w.failure_count + u.n
    FROM unnest(CAST(:ids AS text[]), CAST(:counts AS integer[])) AS u(id, n)
    WHERE w.id = u.id
    """
)

_DISABLE_FAILING = text(
    """
    UPDATE webhook SET active = false, disabled_at = :now, disabled_reason = :reason
    WHERE id = ANY(CAST(:ids AS text[])) AND active AND failure_count >= :max
    """
)

_DISABLE_GONE = text(
    """
    UPDATE webhook SET active = false, disabled_at = :now, disabled_reason = :reason
    WHERE id = ANY(CAST(:ids AS text[])) AND active
    """
)


def update(
    results: list[tuple[Claim, Outcome, Verdict]],
    max_failures: int,
    now: datetime.datetime,
) -> None:
    """Apply a batch of outcomes to their webhooks (in the caller's transaction)."""
    last: dict[str, str | None] = {}
    succeeded: set[str] = set()
    given_up: dict[str, int] = {}
    gone: set[str] = set()
    for claim, outcome, verdict in results:
        hook_id = claim.webhook.id
        last[hook_id] = (
            str(outcome.status) if outcome.status is not None else outcome.error
        )
        if verdict.outcome is AttemptOutcome.SUCCESS:
            succeeded.add(hook_id)
        elif verdict.outcome is AttemptOutcome.GONE:
            gone.add(hook_id)
        elif verdict.outcome is AttemptOutcome.GIVEN_UP:
            given_up[hook_id] = given_up.get(hook_id, 0) + 1
    if not last:
        return
    ids = sorted(last)
    model.Session.execute(_LOCK, {"ids": ids})
    model.Session.execute(
        _LAST_DELIVERY, {"now": now, "ids": ids, "statuses": [last[i] for i in ids]}
    )
    if succeeded:
        model.Session.execute(_RESET_FAILURES, {"ids": sorted(succeeded)})
    if given_up:
        failing = sorted(given_up)
        model.Session.execute(
            _COUNT_FAILURES, {"ids": failing, "counts": [given_up[i] for i in failing]}
        )
        if max_failures:
            model.Session.execute(
                _DISABLE_FAILING,
                {
                    "ids": failing,
                    "now": now,
                    "max": max_failures,
                    "reason": f"{max_failures} consecutive events "
                    "could not be delivered",
                },
            )
    if gone:
        model.Session.execute(
            _DISABLE_GONE, {"ids": sorted(gone), "now": now, "reason": GONE_REASON}
        )
