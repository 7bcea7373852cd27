"""A dataset before and after a transaction: what filters look at, and which
fields changed.

Filters (``matching.py``) look at a dataset's organization, groups, tags,
resource formats, licence and privacy, both as they were before a change and
as they are after it; ``dataset/update`` and ``resource/update`` payloads
list the top-level fields that changed. Both are worked out here, when CKAN
calls ``notify``, from the objects the action loaded and what the transaction
changed in them (``history.py``): the request reads and writes nothing more
for them. Groups are the exception: CKAN need not load a dataset's
memberships, so the statement that records the event reads them
(``groups_sql``), and this module says which memberships the transaction
added and removed.

A dataset created in the transaction has no ``before``: its events count as
``matched`` and their ``changes`` are null (unknown), as are those of a
resource created, deleted or moved in it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import ckan.model as model
from sqlalchemy import inspect

from ckanext.webhooks import history

__all__ = ["DATA_FIELDS", "Facts", "groups_sql", "observe"]

# A resource's data changed when one of these did (an upload sets
# last_modified and size; a link, its url).
DATA_FIELDS = frozenset({"url", "url_type", "hash", "size", "last_modified"})

# CKAN 2.11 keeps dataset extras in a table of their own; 2.12 in the row.
_PACKAGE_EXTRA = getattr(model, "PackageExtra", None)

# The fields compared: every column but the time of the last change.
_PACKAGE_FIELDS = frozenset(inspect(model.Package).column_attrs.keys()) - {
    "metadata_modified"
}
# A resource as resource_show shows it: its extras are top-level fields.
_RESOURCE_FIELDS = frozenset(inspect(model.Resource).column_attrs.keys()) - {
    "metadata_modified",
    "extras",
}


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the event of a dataset or resource change is matched by, and its
    ``changes``. The facets lack ``groups``: ``groups_sql`` adds them."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changes: list[str] | None
    groups_added: list[str]
    groups_removed: list[str]


def observe(
    session: Any, pkg: model.Package, resource: model.Resource | None = None
) -> Facts:
    """The facts of a change of dataset ``pkg`` or, given, of its ``resource``.

    What concerns the dataset is worked out once per flush: a transaction
    that changes many of a dataset's resources makes one event per resource.
    """
    if history.was_deleted(pkg):  # purged: nothing left to match on
        return Facts(None, None, None, [], [])
    memo = history.memo(session)
    dataset = memo.get((_Dataset, pkg.id))
    if dataset is None:
        dataset = memo[(_Dataset, pkg.id)] = _Dataset(session, pkg)
    return dataset.facts(session, resource)


class _Dataset:
    """A dataset's tags, resources and memberships before and after the
    transaction."""

    def __init__(self, session: Any, pkg: model.Package) -> None:
        self.pkg = pkg
        self.values = history.priors(session, pkg)
        self.new = self.values is history.NEW
        self.resources = _Resources(session, pkg)
        self.tags_after = _tags(session, pkg)
        added, removed = _memberships(
            session, model.PackageTag, pkg.id, lambda pt: pt.tag and pt.tag.name
        )
        self.tags_before = (self.tags_after - added) | removed
        added, removed = _memberships(
            session,
            model.Member,
            pkg.id,
            lambda m: m.group_id,
            owner="table_id",
            kind=("table_name", "package"),
        )
        self.groups_added, self.groups_removed = sorted(added), sorted(removed)
        self.changes = (
            None
            if self.new
            else _dataset_changes(
                session,
                pkg,
                self.values,
                self.tags_before != self.tags_after,
                self.resources,
            )
        )

    def _facets(self, after: bool, formats: list[str]) -> dict[str, Any]:
        def value(name: str) -> Any:
            if after:
                return getattr(self.pkg, name)
            return history.before(self.values, self.pkg, name)

        return {
            "private": bool(value("private")),
            "org": value("owner_org"),
            "name": value("name"),
            "license_id": value("license_id"),
            "tags": sorted(self.tags_after if after else self.tags_before),
            "formats": formats,
        }

    def facts(self, session: Any, resource: model.Resource | None) -> Facts:
        resources = self.resources
        if resource is None:
            now, was = resources.after.values(), resources.before.values()
            changes = self.changes
        else:
            # A resource's own format stands for the dataset's formats.
            now_one = resources.after.get(resource.id)
            was_one = resources.before.get(resource.id)
            now = [now_one] if now_one else []
            was = [was_one] if was_one else []
            changes = (
                _resource_changes(resource, history.priors(session, resource))
                if now_one and was_one
                else None
            )
        after = self._facets(True, resources.formats(now, True))
        before = self._facets(False, resources.formats(was, False))
        return Facts(
            None if self.new else before,
            after,
            changes,
            self.groups_added,
            self.groups_removed,
        )


class _Resources:
    """A dataset's active resources after the transaction and before it:
    ``{id: (resource, priors)}``."""

    def __init__(self, session: Any, pkg: model.Package) -> None:
        self.after: dict[str, tuple[Any, Any]] = {}
        self.before: dict[str, tuple[Any, Any]] = {}
        for res in pkg.resources_all:
            if _is_active_in(res, pkg.id):
                self.after[res.id] = (res, history.priors(session, res))
        # Those in the dataset now, and those touched that were in it.
        for res, values in [
            *self.after.values(),
            *_touched(session, model.Resource, pkg.id),
        ]:
            if _was_active_in(res, values, pkg.id):
                self.before[res.id] = (res, values)
        self.changed = set(self.before) != set(self.after) or any(
            history.changed(values, res, _RESOURCE_FIELDS | {"extras"})
            for res, values in self.after.values()
        )

    @staticmethod
    def formats(resources: Iterable[tuple[Any, Any]], after: bool) -> list[str]:
        """The upper-cased formats of ``resources``, after or before."""
        found = set()
        for res, values in resources:
            value = res.format if after else history.before(values, res, "format")
            if value:
                found.add(value.upper())
        return sorted(found)


def _touched(
    session: Any, cls: type, package_id: str, owner: str = "package_id"
) -> list[tuple[Any, Any]]:
    """The entities of ``cls`` touched in the transaction that belong, or
    belonged before it, to dataset ``package_id`` (by their ``owner``
    attribute), with their priors. Indexed once per flush: a transaction
    may change thousands of datasets (an organization purged)."""
    memo = history.memo(session)
    index = memo.get((cls, owner))
    if index is None:
        index = memo[(cls, owner)] = {}
        for obj, values in history.touched(session, cls):
            owners = {getattr(obj, owner)}
            if values is not history.NEW:
                owners.add(history.before(values, obj, owner))
            for one in owners:
                index.setdefault(one, []).append((obj, values))
    return index.get(package_id, [])


def _is_active_in(obj: Any, package_id: str, owner: str = "package_id") -> bool:
    """Whether ``obj`` is an active row of dataset ``package_id`` (by its
    ``owner`` attribute) after the transaction."""
    return (
        getattr(obj, owner) == package_id
        and obj.state == "active"
        and not history.was_deleted(obj)
    )


def _was_active_in(
    obj: Any, values: Any, package_id: str, owner: str = "package_id"
) -> bool:
    """Whether ``obj``, with priors ``values``, was an active row of dataset
    ``package_id`` before the transaction."""
    return (
        values is not history.NEW
        and history.before(values, obj, owner) == package_id
        and history.before(values, obj, "state") == "active"
    )


def _tags(session: Any, pkg: model.Package) -> set[str]:
    """The names of the dataset's active tags, from what CKAN loaded if it did."""
    if "package_tags" not in inspect(pkg).unloaded:
        return {
            pt.tag.name
            for pt in pkg.package_tags
            if pt.state == "active" and pt.tag and not history.was_deleted(pt)
        }
    rows = (
        session.query(model.Tag.name)
        .join(model.PackageTag, model.PackageTag.tag_id == model.Tag.id)
        .filter(model.PackageTag.package_id == pkg.id)
        .filter(model.PackageTag.state == "active")
    )
    return {name for (name,) in rows}


def _memberships(
    session: Any,
    cls: type,
    package_id: str,
    key: Any,
    *,
    owner: str = "package_id",
    kind: tuple[str, str] | None = None,
) -> tuple[set[str], set[str]]:
    """What the transaction added to and removed from the dataset's active
    rows of ``cls`` (tags, memberships), each by ``key``."""
    added: set[str] = set()
    removed: set[str] = set()
    for obj, values in _touched(session, cls, package_id, owner):
        if kind is not None and getattr(obj, kind[0]) != kind[1]:
            continue
        now = _is_active_in(obj, package_id, owner)
        was = _was_active_in(obj, values, package_id, owner)
        if now and not was:
            added.add(key(obj))
        elif was and not now:
            removed.add(key(obj))
    return added - {None}, removed - {None}


def _dataset_changes(
    session: Any,
    pkg: model.Package,
    values: Any,
    tags_changed: bool,
    resources: _Resources,
) -> list[str]:
    changes = history.changed(values, pkg, _PACKAGE_FIELDS)
    if tags_changed:
        changes.add("tags")
    if resources.changed:
        changes.add("resources")
    if _PACKAGE_EXTRA is not None and _extras_changed(session, pkg.id):
        changes.add("extras")
    return sorted(changes)


def _extras_changed(session: Any, package_id: str) -> bool:
    """CKAN 2.11: whether the dataset's active extras differ (rows of their own)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for extra, values in _touched(session, _PACKAGE_EXTRA, package_id):
        if _is_active_in(extra, package_id):
            after[extra.key] = extra.value
        if _was_active_in(extra, values, package_id):
            key = history.before(values, extra, "key")
            before[key] = history.before(values, extra, "value")
    return before != after


def _resource_changes(res: Any, values: Any) -> list[str]:
    changes = history.changed(values, res, _RESOURCE_FIELDS)
    if values and "extras" in values:
        old = history.before(values, res, "extras") or {}
        new = res.extras or {}
        if values["extras"] is history.UNKNOWN:
            changes.update(new)
        else:
            changes.update(
                key for key in old.keys() | new.keys() if old.get(key) != new.get(key)
            )
    return sorted(changes)


def groups_sql(package_id: str, added: str, removed: str) -> str:
    """Common table expression ``groups (now, was)``: the ids of the active
    groups (not organizations) of dataset ``package_id`` after the
    transaction, and before it, given what it ``added`` and ``removed`` (SQL,
    text and text[])."""
    return f"""groups AS MATERIALIZED (
        SELECT now, CASE WHEN cardinality({added}) = 0
                          AND cardinality({removed}) = 0 THEN now
            ELSE (SELECT COALESCE(jsonb_agg(id ORDER BY id), '[]') FROM (
                (SELECT jsonb_array_elements_text(now) AS id
                 EXCEPT SELECT unnest({added}))
                UNION
                SELECT gr.id FROM "group" gr
                WHERE gr.id = ANY({removed})
                  AND gr.state = 'active' AND NOT gr.is_organization) AS was)
            END AS was
        FROM (
            SELECT COALESCE(jsonb_agg(m.group_id ORDER BY m.group_id), '[]') AS now
            FROM member m JOIN "group" gr ON gr.id = m.group_id
            WHERE m.table_id = {package_id} AND m.table_name = 'package'
              AND m.state = 'active' AND gr.state = 'active'
              AND NOT gr.is_organization) AS g
    )"""
