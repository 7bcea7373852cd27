"""Render claimed deliveries: the entity as each owner may see it, then the body.

An entity is rendered once per class of readers CKAN shows it the same way
to (``visibility.ReaderClassViews``), or once per owner where that cannot be
trusted: when ``ckanext.webhooks.render_per_owner`` says a plugin tailors
``package_show`` per user, or when a plugin changes who may read
(``core_reading_rules``). Views are kept for the next batch too, per
(event, class) or per (event, owner): an event's deliveries often span two
batches, and the view was taken after the event, so it is still valid. So is
each view's serialised body (``payload.Template``), into which each
delivery's webhook id is spliced, unless an ``IWebhooks`` plugin may shape
payloads per webhook.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import ckan.plugins as p

from ckanext.webhooks import config as cfg
from ckanext.webhooks import leases
from ckanext.webhooks.delivery import sequencing
from ckanext.webhooks.delivery.claiming import Claim
from ckanext.webhooks.delivery.payload import Template, render, render_spliced
from ckanext.webhooks.delivery.visibility import EntityViews, Hidden, ReaderClassViews
from ckanext.webhooks.interfaces import IWebhooks
from ckanext.webhooks.model import utcnow
from ckanext.webhooks.vocabulary import PING

__all__ = ["Prepared", "Renderer", "core_reading_rules"]

log = logging.getLogger(__name__)

SHOW_ACTIONS = frozenset({"package_show", "organization_show", "group_show"})


@dataclasses.dataclass
class Prepared:
    """A claimed delivery ready to go: its body and signed headers."""

    claim: Claim
    body: bytes
    headers: dict[str, str]

    @property
    def host(self) -> str:
        return self.claim.webhook.receiver_host


def core_reading_rules() -> bool:
    """Whether CKAN's own rule decides who may read datasets and groups.

    Not if a plugin brings permission labels, or its own auth function or
    action for a ``*_show``: the SQL of reader classes would not know it.
    """
    if any(True for _ in p.PluginImplementations(p.IPermissionLabels)):
        return False
    for plugin in p.PluginImplementations(p.IAuthFunctions):
        if SHOW_ACTIONS & plugin.get_auth_functions().keys():
            return False
    return not any(
        SHOW_ACTIONS & plugin.get_actions().keys()
        for plugin in p.PluginImplementations(p.IActions)
    )


class Renderer:
    """Turns claims into requests; skips what the owner may not see."""

    def __init__(self) -> None:
        self._previous: dict[tuple[str, str | None], Any] = {}  # per owner
        self._carried: dict[tuple[str, str], Any] = {}  # per class of readers
        self.per_owner = cfg.render_per_owner()
        if not self.per_owner and not core_reading_rules():
            log.info("a plugin changes who may read: rendering per owner")
            self.per_owner = True
        # Owners share a view: a plugin shaping payloads gets its own copy,
        # and each delivery its own serialisation.
        self._shaped = any(True for _ in p.PluginImplementations(IWebhooks))
        # Per (event, view): the view is held by its template, so the id of
        # the view is not reused while it is a key.
        self._templates: dict[tuple[str, int], Template | None] = {}

    def render(self, claims: list[Claim]) -> tuple[list[Prepared], list[Claim]]:
        views = EntityViews() if self.per_owner else ReaderClassViews(self._carried)
        ready: list[Prepared] = []
        sendable: list[Claim] = []
        skipped: list[Claim] = []
        now = utcnow()
        for claim in claims:
            off = claim.event.topic != PING and (
                not claim.webhook.active or leases.expired(claim.webhook, now)
            )
            (skipped if off else sendable).append(claim)
        views.prepare(
            (claim.event, claim.webhook.owner_id)
            for claim in sendable
            if _key(claim) not in self._previous
        )
        seen: dict[tuple[str, str | None], Any] = {}
        shown: list[tuple[Claim, Any]] = []
        for claim in sendable:
            key = _key(claim)
            if key not in seen:
                seen[key] = (
                    self._previous[key]
                    if key in self._previous
                    else _view(views, claim)
                )
            entity = seen[key]
            if isinstance(entity, Hidden):
                skipped.append(claim)
            else:
                shown.append((claim, entity))
        # Numbered only now: what is not sent takes no number.
        sequencing.number([claim for claim, _ in shown if claim.event.topic != PING])
        templates: dict[tuple[str, int], Template | None] = {}
        for claim, entity in shown:
            if self._shaped:
                body, headers = render(
                    claim.event, claim.webhook, copy.deepcopy(entity), claim.sequence
                )
            else:
                body, headers = self._spliced(claim, entity, templates)
            claim.sent = (headers, body)
            ready.append(Prepared(claim, body, headers))
        self._templates = templates
        if isinstance(views, ReaderClassViews):
            self._carried = views.rendered
        else:
            self._previous = seen
        return ready, skipped

    def _spliced(
        self,
        claim: Claim,
        entity: Any,
        templates: dict[tuple[str, int], Template | None],
    ) -> tuple[bytes, dict[str, str]]:
        """The body from the (event, view)'s template, made on first use."""
        key = (claim.event.id, id(entity))
        if key not in templates:
            templates[key] = (
                self._templates[key]
                if key in self._templates
                else Template.of(claim.event, entity)
            )
        template = templates[key]
        if template is None:
            return render(claim.event, claim.webhook, entity, claim.sequence)
        return render_spliced(claim.event, claim.webhook, template, claim.sequence)


def _key(claim: Claim) -> tuple[str, str | None]:
    return (claim.event.id, claim.webhook.owner_id)


def _view(views: EntityViews, claim: Claim) -> Any:
    try:
        return views.entity(claim.event, claim.webhook)
    except Hidden as hidden:
        return hidden
