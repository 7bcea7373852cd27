"""Event capture: changes become rows of the outbox, in the same transaction.

CKAN calls ``notify`` from the session's ``before_commit``, possibly several
times for one entity (``Package new`` then ``Package changed``) and also for
transactions that then roll back. So the events are written with the same
session, in the same transaction as the change: they commit or vanish with
it. Only after the commit is the job queue woken up (``after_commit``); if
Redis is down at that moment nothing is lost, the rows wait for
``ckan webhooks dispatch``. The request does no network I/O besides that
wake-up.

Organizations and groups do not reach ``notify``; they are read from the
objects CKAN's own ``before_flush`` hook collects for the transaction
(``session._object_cache``), in a ``before_commit`` listener of ours that runs
after CKAN's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import ckan.model as model
import ckan.plugins as p
from ckan.model.domain_object import DomainObjectOperation
from sqlalchemy import event as sa_event
from sqlalchemy import text

from ckanext.webhooks import dataset_state, history, prepared, topics
from ckanext.webhooks.dataset_state import DATA_FIELDS
from ckanext.webhooks.matching import matching_webhooks_sql
from ckanext.webhooks.model import make_event_id, utcnow
from ckanext.webhooks.vocabulary import DATA_CHANGED, DELIVERY_CHANNEL

__all__ = [
    "publish",
    "record_change",
    "register_session_listeners",
    "wake_workers_after_commit",
]

log = logging.getLogger(__name__)

# Keys of session.info, all cleared at the end of each transaction (and so
# is what history.py notes there):
_SEEN = "webhooks_seen"  # {(topic, entity id)} recorded in this transaction
_WAKE = "webhooks_wake"  # events were recorded: wake the queue after commit

# CKAN 2.11 keeps group extras in a table of their own; 2.12 in the group row.
_GROUP_EXTRA = getattr(model, "GroupExtra", None)

# Whether some webhook wants the event just recorded (see _record).
_WANTED_SETTING = "ckanext_webhooks.wanted"


def _insert_events_sql(*, dataset: bool) -> str:
    """Record an event, and a notification for a lingering job if some
    webhook wants it (PostgreSQL delivers it at commit, once per transaction
    however many events ask, and drops it on rollback).

    Every event is kept, for the feed and for recovery (feed.py); one that no
    webhook wants now is born expanded, and wakes nobody. A dataset or
    resource event (``dataset``) also carries the dataset's facets before and
    after the transaction, for the filters, and ``changes``
    (dataset_state.py), to which the statement adds the dataset's groups; a
    resource update that changed the data comes with the id of its
    ``resource/data_changed`` event. One statement, so a change costs one
    round trip; whether some webhook wants one is left in the transaction's
    setting ``_WANTED_SETTING`` (see ``_record``).
    """
    if dataset:
        groups = dataset_state.groups_sql(
            "CAST(:package_id AS text)",
            added="CAST(:groups_added AS text[])",
            removed="CAST(:groups_removed AS text[])",
        )
        facts = f"""{groups},
        facts AS MATERIALIZED (
            SELECT COALESCE(p.before || jsonb_build_object('groups', g.was),
                            p.after) AS before,
                   p.after,
                   CASE WHEN p.changes IS NULL OR g.was = g.now
                             OR CAST(:resource_id AS text) IS NOT NULL
                        THEN p.changes
                        ELSE ARRAY(SELECT unnest(p.changes) UNION SELECT 'groups'
                                   ORDER BY 1) END AS changes
            FROM groups g CROSS JOIN LATERAL (
                SELECT CAST(:before AS jsonb) AS before,
                       CAST(:after AS jsonb)
                           || jsonb_build_object('groups', g.now) AS after,
                       CAST(:changes AS text[]) AS changes) p
        ),
        recorded (n, id, topic) AS (
            VALUES (1, CAST(:id AS text), CAST(:topic AS text)),
                   (2, CAST(:data_changed_id AS text), '{DATA_CHANGED}')
        )"""
        which = "t.id IS NOT NULL"
    else:
        facts = """facts AS (
            SELECT CAST(NULL AS jsonb) AS before, CAST(NULL AS jsonb) AS after,
                   CAST(NULL AS text[]) AS changes
        ),
        recorded (n, id, topic) AS (
            VALUES (1, :id, CAST(:topic AS text))
        )"""
        which = "true"
    matching = matching_webhooks_sql(
        topics=topics.subscriptions_sql("t.topic"),
        package_id=":package_id",
        previous_package_id=":previous_package_id",
        organization_id=":organization_id",
        previous_organization_id=":previous_organization_id",
        before="f.before",
        after="f.after",
        labelled=False,
    )
    return f"""
    WITH {facts},
    inserted AS (
        INSERT INTO webhook_event
            (id, topic, entity_type, entity_id, package_id, organization_id,
             previous_package_id, previous_organization_id, private, snapshot,
             before, after, changes, created, expanded)
        SELECT t.id, t.topic, :entity_type, :entity_id, :package_id,
               :organization_id, :previous_package_id, :previous_organization_id,
               :private, :snapshot, f.before, f.after, f.changes, :created,
               NOT EXISTS ({matching})
        FROM facts f CROSS JOIN recorded t
        WHERE {which}
        ORDER BY t.n
        RETURNING expanded
    ), notified AS (
        SELECT pg_notify('{DELIVERY_CHANNEL}', '') FROM inserted WHERE NOT expanded
    )
    SELECT set_config('{_WANTED_SETTING}',
                      CAST(COALESCE(bool_or(NOT expanded), false) AS text), true),
           (SELECT count(*) FROM notified)
    FROM inserted
    """


_INSERT_EVENT = prepared.Statement("event", _insert_events_sql(dataset=False))
_INSERT_DATASET_EVENTS = prepared.Statement(
    "dataset_events", _insert_events_sql(dataset=True)
)


# Delivered by PostgreSQL at commit (and dropped on rollback): wakes a
# delivery job that lingers (delivery/listener.py) exactly when it may read.
_NOTIFY = text(f"NOTIFY {DELIVERY_CHANNEL}")

# An event's statement runs in a savepoint: should it fail (say the tables
# are not migrated yet), PostgreSQL would otherwise abort the whole
# transaction and with it the user's change. Now only the event is lost,
# loudly. (Plain SQL, not Session.begin_nested(), which would flush and fire
# the session's commit hooks, CKAN's notify among them, for the savepoint.)
# Savepoint, statement and release travel in one round trip: the statement
# leaves its answer in a setting local to the transaction, read last.
_SAVEPOINT = "SAVEPOINT ckanext_webhooks_event"
_RELEASE_AND_ANSWER = (
    "RELEASE SAVEPOINT ckanext_webhooks_event; "
    f"SELECT current_setting('{_WANTED_SETTING}')"
)
_ROLLBACK_TO_SAVEPOINT = text("ROLLBACK TO SAVEPOINT ckanext_webhooks_event")


def wake_workers_after_commit() -> None:
    """Wake delivery once the current transaction commits (not before: a
    worker must find the rows this transaction writes): a NOTIFY for a job
    that lingers, delivered by PostgreSQL at commit, and after the commit a
    job queued if none lingers."""
    session = model.Session()
    if not session.info.get(_WAKE):
        session.execute(_NOTIFY)
        session.info[_WAKE] = True


def _forget(session: Any) -> None:
    for key in (_SEEN, _WAKE):
        session.info.pop(key, None)
    history.forget(session)


def _after_commit(session: Any) -> None:
    wake = session.info.pop(_WAKE, False)
    _forget(session)
    if wake:
        from ckanext.webhooks.delivery.waker import wake_soon

        wake_soon()


def register_session_listeners() -> None:
    """Listen on both of CKAN's session factories, as CKAN itself does."""
    for target in (model.meta.Session, model.meta.create_local_session):
        for name, listener in (
            ("before_flush", history.remember),
            ("before_commit", _record_group_changes),
            ("after_commit", _after_commit),
            ("after_rollback", _forget),
        ):
            if not sa_event.contains(target, name, listener):
                sa_event.listen(target, name, listener)


def _lifecycle_topic(kind: str, state: str, before: Any, operation: str) -> str | None:
    """create / update / delete from an entity's state and its earlier state."""
    if operation == DomainObjectOperation.new:
        return f"{kind}/create" if state == "active" else None
    if operation == DomainObjectOperation.deleted:  # purged
        return f"{kind}/delete" if state == "active" else None
    if state == "active":
        return f"{kind}/create" if before in ("draft", "deleted") else f"{kind}/update"
    if state == "deleted" and before not in (None, "deleted", "draft"):
        return f"{kind}/delete"
    return None


def _package_of(res: model.Resource) -> model.Package | None:
    """The resource's dataset now (the relationship lags behind a moved one)."""
    pkg = res.package
    if pkg is None or pkg.id != res.package_id:
        pkg = model.Package.get(res.package_id) if res.package_id else pkg
    return pkg


def _resource_topic(session: Any, res: model.Resource, operation: str) -> str | None:
    pkg = _package_of(res)
    if pkg is None or pkg.state != "active":
        # A draft dataset is not announced; a deleted one was announced already.
        return None
    if operation == DomainObjectOperation.changed and res.state == "active":
        return (
            "resource/create"
            if history.prior(session, res, "state") == "deleted"
            else "resource/update"
        )
    return _lifecycle_topic(
        "resource", res.state, history.prior(session, res, "state"), operation
    )


def _snapshot(entity: Any, pkg: model.Package) -> dict[str, Any]:
    """What a delete payload carries: enough to identify what is gone."""
    if isinstance(entity, model.Resource):
        return {
            "id": entity.id,
            "name": entity.name,
            "package_id": pkg.id,
            "package_name": pkg.name,
        }
    return {
        "id": pkg.id,
        "name": pkg.name,
        "title": pkg.title,
        "type": pkg.type,
        "owner_org": pkg.owner_org,
        "private": bool(pkg.private),
    }


def _first_time(session: Any, topic: str, entity_id: str, kind: str) -> bool:
    """One event per entity and topic per transaction; create/delete win."""
    seen = session.info.setdefault(_SEEN, set())
    if (topic, entity_id) in seen:
        return False
    if topic.endswith("/update") and (
        (f"{kind}/create", entity_id) in seen or (f"{kind}/delete", entity_id) in seen
    ):
        return False
    seen.add((topic, entity_id))
    return True


def _in_savepoint(
    session: Any, statement: prepared.Statement, params: dict[str, Any]
) -> Any:
    try:
        row = statement.run(
            session, params, before=_SAVEPOINT, after=_RELEASE_AND_ANSWER
        )
    except Exception:
        # The savepoint was sent with the statement that failed (a failure
        # before sending leaves nothing to undo).
        if prepared.transaction_failed(session):
            session.execute(_ROLLBACK_TO_SAVEPOINT)
        raise
    return row[0]


def _record(
    session: Any, statement: prepared.Statement = _INSERT_EVENT, **event: Any
) -> tuple[str, bool]:
    """Write the event; return its id, and whether some webhook wants it."""
    event_id = make_event_id()
    params = {
        "previous_package_id": None,
        "previous_organization_id": None,
        "id": event_id,
        "created": utcnow(),
        **event,
    }
    try:
        answer = _in_savepoint(session, statement, params)
    except Exception as error:
        if not prepared.worth_retrying(error):
            raise
        answer = _in_savepoint(session, statement, params)
    wanted = answer == "true"
    if wanted:
        session.info[_WAKE] = True
    return event_id, wanted


def record_change(entity: Any, operation: str) -> None:
    """IDomainObjectModification.notify: write at most one event per topic."""
    session = model.Session()
    if isinstance(entity, model.Package):
        pkg, entity_type = entity, "dataset"
        topic = _lifecycle_topic(
            "dataset", pkg.state, history.prior(session, pkg, "state"), operation
        )
    elif isinstance(entity, model.Resource):
        pkg, entity_type = _package_of(entity), "resource"
        topic = _resource_topic(session, entity, operation)
    else:
        return
    if topic is None or not _first_time(session, topic, entity.id, entity_type):
        return

    # Visibility before this change counts too: a dataset made private and
    # deleted in one go must not be announced to the public.
    private = bool(pkg.private) or bool(history.prior(session, pkg, "private"))
    previous_org = history.prior(session, pkg, "owner_org")
    previous_pkg = (
        history.prior(session, entity, "package_id")
        if isinstance(entity, model.Resource)
        else None
    )
    resource = entity if entity_type == "resource" else None
    facts = dataset_state.observe(session, pkg, resource)
    data_changed = topic == "resource/update" and bool(
        DATA_FIELDS.intersection(facts.changes or ())
    )
    _record(
        session,
        _INSERT_DATASET_EVENTS,
        topic=topic,
        entity_type=entity_type,
        entity_id=entity.id,
        resource_id=resource.id if resource else None,
        package_id=pkg.id,
        organization_id=pkg.owner_org,
        previous_package_id=previous_pkg,
        previous_organization_id=previous_org,
        private=private,
        snapshot=json.dumps(_snapshot(entity, pkg)),
        before=_json(facts.before),
        after=_json(facts.after),
        changes=facts.changes,
        groups_added=facts.groups_added,
        groups_removed=facts.groups_removed,
        data_changed_id=make_event_id() if data_changed else None,
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _record_group_changes(session: Any) -> None:
    """Organization and group events, from CKAN's per-transaction object cache."""
    cache = getattr(session, "_object_cache", None)
    if not cache or not p.plugin_loaded("webhooks"):
        return
    try:
        changes: dict[str, tuple[model.Group, str]] = {}
        for operation, objects in (
            (DomainObjectOperation.changed, cache["changed"]),
            (DomainObjectOperation.deleted, cache["deleted"]),
            (DomainObjectOperation.new, cache["new"]),
        ):
            for obj in objects:
                group = obj if isinstance(obj, model.Group) else None
                operation_ = operation
                # A changed extra is an update of its group. Memberships are
                # not announced: who is a member stays with the members, and
                # a dataset joining a group is a dataset/update.
                if _GROUP_EXTRA is not None and isinstance(obj, _GROUP_EXTRA):
                    group, operation_ = obj.group, DomainObjectOperation.changed
                # The group's own new/deleted operation beats an extra's.
                if group is not None and (group.id not in changes or group is obj):
                    changes[group.id] = (group, operation_)
        for group, operation in changes.values():
            kind = "organization" if group.is_organization else "group"
            topic = _lifecycle_topic(
                kind, group.state, history.prior(session, group, "state"), operation
            )
            if topic is None or not _first_time(session, topic, group.id, kind):
                continue
            _record(
                session,
                topic=topic,
                entity_type=kind,
                entity_id=group.id,
                package_id=None,
                organization_id=group.id if group.is_organization else None,
                private=False,
                snapshot=json.dumps(
                    {
                        "id": group.id,
                        "name": group.name,
                        "title": group.title,
                        "type": group.type,
                    }
                ),
            )
    except Exception:
        # Like CKAN's notify: log loudly, never break the user's commit.
        log.exception("webhooks: could not record organization/group events")


def publish(
    topic: str,
    data: dict[str, Any],
    *,
    dataset: str | None = None,
    organization: str | None = None,
) -> tuple[str, bool]:
    """Publish a custom event from Python, in the current transaction.

    It is sent (with the same signing, retries, log and access rules) only if
    the transaction commits. ``topic`` is ``custom/<name>`` or a topic an
    ``IWebhooks`` plugin declares; ``data`` is any JSON object, sent as the
    payload's ``entity``. With ``dataset`` (an id) the event reaches only
    webhooks whose owner may read that dataset. Returns the event id, and
    whether some webhook wants it now (the event feed has it either way).
    """
    if not topics.is_publishable(topic):
        raise ValueError(f"{topic!r} cannot be published as a custom event")
    session = model.Session()
    pkg = model.Package.get(dataset) if dataset else None
    return _record(
        session,
        topic=topic,
        entity_type="custom",
        entity_id=pkg.id if pkg else "",
        package_id=pkg.id if pkg else None,
        organization_id=organization or (pkg.owner_org if pkg else None),
        private=bool(pkg and pkg.private),
        snapshot=json.dumps(data, separators=(",", ":")),
    )
