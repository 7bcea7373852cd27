"""Each webhook numbers the events it is sent, one by one: the payload's ``sequence``.

A receiver that sees a number skipped knows it missed an event, and can fill
the gap from the event feed or with ``webhook_recover``. A delivery gets its
number when it is first sent, so a delivery its owner may not see (skipped)
takes none and leaves no gap that cannot be filled; retries, redeliveries
and recovery keep the number it got. Numbers are taken from
``webhook.last_sequence`` with the rows locked in id order (workers
numbering the same webhooks wait for each other rather than deadlock), and
committed before anything is sent: a number is never given twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import ckan.model as model
from sqlalchemy import text

if TYPE_CHECKING:
    from ckanext.webhooks.delivery.claiming import Claim

__all__ = ["number"]

_LOCK = text(
    "SELECT id FROM webhook WHERE id = ANY(CAST(:ids AS text[])) "
    "ORDER BY id FOR NO KEY UPDATE"
)

_TAKE = text(
    """
    UPDATE webhook w SET last_sequence = w.last_sequence + u.n
    FROM unnest(CAST(:ids AS text[]), CAST(:counts AS bigint[])) AS u(id, n)
    WHERE w.id = u.id
    RETURNING w.id, w.last_sequence - u.n
    """
)

_GIVE = text(
    """
    UPDATE webhook_delivery d SET sequence = u.sequence
    FROM unnest(CAST(:ids AS bigint[]), CAST(:numbers AS bigint[]))
        AS u(id, sequence)
    WHERE d.id = u.id
    """
)


def number(claims: list[Claim]) -> None:
    """Give each claim without a number the next of its webhook's, in event
    order; commit."""
    fresh: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        if claim.sequence is None:
            fresh[claim.webhook.id].append(claim)
    if not fresh:
        return
    ids = sorted(fresh)
    model.Session.execute(_LOCK, {"ids": ids})
    taken = model.Session.execute(
        _TAKE, {"ids": ids, "counts": [len(fresh[i]) for i in ids]}
    ).all()
    deliveries, numbers = [], []
    for webhook_id, before in taken:
        ordered = sorted(fresh[webhook_id], key=lambda c: c.event.sequence)
        for offset, claim in enumerate(ordered, start=1):
            claim.sequence = before + offset
            deliveries.append(claim.delivery_id)
            numbers.append(claim.sequence)
    model.Session.execute(_GIVE, {"ids": deliveries, "numbers": numbers})
    model.Session.commit()
