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

import ckan.authz as authz
import ckan.model as model
import ckan.plugins as p

from ckanext.webhooks import config as cfg
from ckanext.webhooks import leases
from ckanext.webhooks.delivery import sequencing
from ckanext.webhooks.delivery.claiming import Claim
from ckanext.webhooks.delivery.payload import (
    Extras,
    Shape,
    Template,
    render,
    render_spliced,
    shape_of,
)
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
        # Per (event, view, shape): the view is held by its template, so the
        # id of the view is not reused while it is a key.
        self._templates: dict[tuple[str, int, Shape], Template | None] = {}

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
        shown: list[tuple[Claim, Any, Extras]] = []
        readers = _PrivateReaders()
        for claim in sendable:
            key = _key(claim)
            if key not in seen:
                seen[key] = (
                    self._previous[key]
                    if key in self._previous
                    else _view(views, claim)
                )
            placed = _place(claim, seen[key], readers)
            if placed is None:
                skipped.append(claim)
            else:
                shown.append((claim, *placed))
        # Numbered only now: what is not sent takes no number.
        sequencing.number([claim for claim, _, _ in shown if claim.event.topic != PING])
        templates: dict[tuple[str, int, Shape, str | None], Template | None] = {}
        for claim, entity, extras in shown:
            if self._shaped or extras.coalesced > 1:
                body, headers = render(
                    claim.event,
                    claim.webhook,
                    copy.deepcopy(entity) if self._shaped else entity,
                    claim.sequence,
                    extras,
                )
            else:
                body, headers = self._spliced(claim, entity, extras, templates)
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
        extras: Extras,
        templates: dict[tuple[str, int, Shape, str | None], Template | None],
    ) -> tuple[bytes, dict[str, str]]:
        """The body from the (event, view, shape, filter)'s template, made on
        first use: a thin or CloudEvents body never reaches a webhook of
        another shape."""
        shape = shape_of(claim.webhook)
        key = (claim.event.id, id(entity), shape, extras.filter)
        if key not in templates:
            templates[key] = (
                self._templates[key]
                if key in self._templates
                else Template.of(claim.event, entity, shape, extras)
            )
        template = templates[key]
        if template is None:
            return render(claim.event, claim.webhook, entity, claim.sequence, extras)
        return render_spliced(claim.event, claim.webhook, template, claim.sequence)


class _PrivateReaders:
    """Who could read a private dataset of an organization, asked once per
    (owner, organization) in a batch."""

    def __init__(self) -> None:
        self._known: dict[tuple[str | None, str | None], bool] = {}

    def __call__(self, owner_id: str | None, organization_id: str | None) -> bool:
        key = (owner_id, organization_id)
        if key not in self._known:
            user = model.User.get(owner_id) if owner_id else None
            self._known[key] = bool(
                user is not None
                and user.state == "active"
                and (
                    user.sysadmin
                    or (
                        organization_id is not None
                        and authz.has_user_permission_for_group_or_org(
                            organization_id, user.name, "read"
                        )
                    )
                )
            )
        return self._known[key]


def _place(
    claim: Claim, entity: Any, readers: _PrivateReaders
) -> tuple[Any, Extras] | None:
    """What a delivery sends: the entity and its shape, or None (skipped).

    The filter label from expansion (matching.py) compares the dataset's
    facets before and after; privacy is judged here, at send time, for the
    owner of a webhook with open-data filters: a dataset made private left
    the set of a subscriber who may no longer read it (told once, with only
    what it saw: the id and the old name), and one made public entered it
    for a subscriber who could not read it. Webhooks without such filters
    keep the plain rule: what the owner may not read is not sent.
    """
    label = claim.filter
    event = claim.event
    if label is None or event.topic.endswith("/delete") or not _filtered(claim):
        return None if isinstance(entity, Hidden) else (entity, _extras(claim, label))
    before, after = event.before or {}, event.after or {}
    privacy_changed = bool(before.get("private")) != bool(after.get("private"))
    if isinstance(entity, Hidden) and not (privacy_changed and after.get("private")):
        return None
    could_read_before = not before.get("private") or readers(
        claim.webhook.owner_id, before.get("org")
    )
    was_in = label in ("matched", "left") and could_read_before
    is_in = label in ("matched", "entered") and not isinstance(entity, Hidden)
    if not (was_in or is_in):
        return None
    label = "matched" if was_in and is_in else "entered" if is_in else "left"
    if isinstance(entity, Hidden):
        return _left(event), Extras(label, claim.coalesced, claim.changes, True)
    return entity, _extras(claim, label)


def _filtered(claim: Claim) -> bool:
    hook = claim.webhook
    return bool(
        hook.filter_groups
        or hook.filter_tags
        or hook.filter_formats
        or hook.filter_licenses
    )


def _left(event: Any) -> dict[str, Any]:
    """What a subscriber who may no longer read a dataset is told of it."""
    if event.entity_type == "resource":
        return {"id": event.entity_id, "package_id": event.package_id}
    return {"id": event.entity_id, "name": (event.before or {}).get("name")}


def _extras(claim: Claim, label: str | None) -> Extras:
    return Extras(label, claim.coalesced, claim.changes)


def _key(claim: Claim) -> tuple[str, str | None]:
    return (claim.event.id, claim.webhook.owner_id)


def _view(views: EntityViews, claim: Claim) -> Any:
    try:
        return views.entity(claim.event, claim.webhook)
    except Hidden as hidden:
        return hidden
