"""Render claimed deliveries: the entity as each owner may see it, then the body.

Views are computed once per (event, owner) and kept for the next batch too:
an event's deliveries often span two batches, and the view was taken after
the event, so it is still valid.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ckanext.webhooks.delivery.claiming import Claim
from ckanext.webhooks.delivery.payload import render
from ckanext.webhooks.delivery.visibility import EntityViews, Hidden
from ckanext.webhooks.vocabulary import PING

__all__ = ["Prepared", "Renderer"]


@dataclasses.dataclass
class Prepared:
    """A claimed delivery ready to go: its body and signed headers."""

    claim: Claim
    body: bytes
    headers: dict[str, str]

    @property
    def host(self) -> str:
        return self.claim.webhook.receiver_host


class Renderer:
    """Turns claims into requests; skips what the owner may not see."""

    def __init__(self) -> None:
        self._previous: dict[tuple[str, str | None], Any] = {}

    def render(self, claims: list[Claim]) -> tuple[list[Prepared], list[Claim]]:
        views = EntityViews()
        ready, skipped = [], []
        seen: dict[tuple[str, str | None], Any] = {}
        for claim in claims:
            if not claim.webhook.active and claim.event.topic != PING:
                skipped.append(claim)
                continue
            key = (claim.event.id, claim.webhook.owner_id)
            if key not in seen:
                seen[key] = (
                    self._previous[key]
                    if key in self._previous
                    else _view(views, claim)
                )
            entity = seen[key]
            if isinstance(entity, Hidden):
                skipped.append(claim)
                continue
            body, headers = render(claim.event, claim.webhook, entity)
            ready.append(Prepared(claim, body, headers))
        self._previous = seen
        return ready, skipped


def _view(views: EntityViews, claim: Claim) -> Any:
    try:
        return views.entity(claim.event, claim.webhook)
    except Hidden as hidden:
        return hidden
