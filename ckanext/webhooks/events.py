"""Event capture: dataset and resource changes become rows of the outbox.

CKAN calls ``notify`` from the session's ``before_commit``, possibly several
times for one entity (``Package new`` then ``Package changed``) and also for
transactions that then roll back. So the events are written with the same
session, in the same transaction as the change: they commit or vanish with
it. Only after the commit is the job queue woken up (``after_commit``); if
Redis is down at that moment nothing is lost, the rows wait for
``ckan webhooks dispatch``. The request does no network I/O besides that
wake-up.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import ckan.model as model
from ckan.model.domain_object import DomainObjectOperation
from sqlalchemy import event as sa_event
from sqlalchemy import inspect, text

from ckanext.webhooks import topics
from ckanext.webhooks.model import make_event_id, utcnow

__all__ = ["record_change", "register_session_listeners"]

log = logging.getLogger(__name__)

_PRIOR = (
    "webhooks_prior"  # {(class name, id, attribute): value before this transaction}
)
_SEEN = "webhooks_seen"  # {(topic, entity id)} recorded in this transaction
_WAKE = "webhooks_wake"  # events were recorded: wake the queue after commit

_INSERT_EVENT = text(
    """
    INSERT INTO webhook_event
        (id, topic, entity_type, entity_id, package_id, organization_id,
         private, snapshot, created, expanded)
    SELECT :id, :topic, :entity_type, :entity_id, :package_id,
           :organization_id, :private, :snapshot, :created, false
    WHERE EXISTS (
        SELECT 1 FROM webhook w
        WHERE w.active
          AND w.topic = ANY(:subscriptions)
          AND (w.package_id IS NULL OR w.package_id = :package_id)
          AND (w.organization_id IS NULL
               OR w.organization_id = :organization_id)
    )
    """
)


def _remember_prior_values(session: Any, flush_context: Any, instances: Any) -> None:
    """Keep the state (and visibility) an entity had when the transaction began.

    CKAN flushes before calling ``notify``, which wipes the attribute history,
    so transitions (draft to active, active to deleted) are noted here.
    """
    prior = session.info.setdefault(_PRIOR, {})
    for obj in session.dirty:
        if not isinstance(obj, (model.Package, model.Resource)):
            continue
        attrs = inspect(obj).attrs
        for name in ("state", "private"):
            if name not in attrs:
                continue
            deleted = attrs[name].history.deleted
            if deleted:
                prior.setdefault((type(obj).__name__, obj.id, name), deleted[0])


def _forget(session: Any) -> None:
    for key in (_PRIOR, _SEEN, _WAKE):
        session.info.pop(key, None)


def _after_commit(session: Any) -> None:
    wake = session.info.pop(_WAKE, False)
    _forget(session)
    if wake:
        from ckanext.webhooks.delivery import wake_workers

        wake_workers()


def register_session_listeners() -> None:
    """Listen on both of CKAN's session factories, as CKAN itself does."""
    for target in (model.meta.Session, model.meta.create_local_session):
        for name, listener in (
            ("before_flush", _remember_prior_values),
            ("after_commit", _after_commit),
            ("after_rollback", _forget),
        ):
            if not sa_event.contains(target, name, listener):
                sa_event.listen(target, name, listener)


def _prior(session: Any, obj: Any, name: str) -> Any:
    return session.info.get(_PRIOR, {}).get((type(obj).__name__, obj.id, name))


def _package_topic(session: Any, pkg: model.Package, operation: str) -> str | None:
    state = pkg.state
    before = _prior(session, pkg, "state")
    if operation == DomainObjectOperation.new:
        return "dataset/create" if state == "active" else None
    if operation == DomainObjectOperation.deleted:  # purged
        return "dataset/delete" if state == "active" else None
    if state == "active":
        return "dataset/create" if before in ("draft", "deleted") else "dataset/update"
    if state == "deleted" and before not in (None, "deleted", "draft"):
        return "dataset/delete"
    return None


def _resource_topic(session: Any, res: model.Resource, operation: str) -> str | None:
    pkg = res.package
    if pkg is None or pkg.state != "active":
        # A draft dataset is not announced; a deleted one was announced already.
        return None
    state = res.state
    before = _prior(session, res, "state")
    if operation == DomainObjectOperation.new:
        return "resource/create" if state == "active" else None
    if operation == DomainObjectOperation.deleted:
        return "resource/delete" if state == "active" else None
    if state == "active":
        return "resource/create" if before == "deleted" else "resource/update"
    if state == "deleted" and before not in (None, "deleted"):
        return "resource/delete"
    return None


def _snapshot(entity: Any, pkg: model.Package) -> dict[str, Any]:
    """What a delete payload carries: enough to identify what is gone."""
    snapshot = {
        "id": pkg.id,
        "name": pkg.name,
        "title": pkg.title,
        "type": pkg.type,
        "owner_org": pkg.owner_org,
        "private": bool(pkg.private),
    }
    if isinstance(entity, model.Resource):
        snapshot = {
            "id": entity.id,
            "name": entity.name,
            "package_id": pkg.id,
            "package_name": pkg.name,
        }
    return snapshot


def record_change(entity: Any, operation: str) -> None:
    """IDomainObjectModification.notify: write at most one event per topic."""
    session = model.Session()
    if isinstance(entity, model.Package):
        topic = _package_topic(session, entity, operation)
        pkg, entity_type = entity, "dataset"
    elif isinstance(entity, model.Resource):
        topic = _resource_topic(session, entity, operation)
        pkg, entity_type = entity.package, "resource"
    else:
        return
    if topic is None:
        return

    seen = session.info.setdefault(_SEEN, set())
    if (topic, entity.id) in seen:
        return
    if topic.endswith("/update") and (
        (f"{entity_type}/create", entity.id) in seen
        or (f"{entity_type}/delete", entity.id) in seen
    ):
        return
    seen.add((topic, entity.id))

    # Visibility as it was before this change: a dataset made private and
    # deleted in one go must not be announced to the public.
    was_private = _prior(session, pkg, "private")
    private = bool(pkg.private) or bool(was_private)
    result = session.execute(
        _INSERT_EVENT,
        {
            "id": make_event_id(),
            "topic": topic,
            "entity_type": entity_type,
            "entity_id": entity.id,
            "package_id": pkg.id,
            "organization_id": pkg.owner_org,
            "private": private,
            "snapshot": json.dumps(_snapshot(entity, pkg)),
            "created": utcnow(),
            "subscriptions": topics.matching_subscriptions(topic),
        },
    )
    if result.rowcount:
        session.info[_WAKE] = True
