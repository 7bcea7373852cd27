"""A dataset before and after a transaction: what filters look at, and which
fields changed.

Filters (``matching.py``) look at a dataset's organization, groups, tags,
resource formats, licence and privacy, both as they were before a change and
as they are after it; ``dataset/update`` and ``resource/update`` payloads
list the top-level fields that changed. Neither can be read reliably from
CKAN's objects at commit time (CKAN flushes several times per action, and
tags, groups and resources are rows of their own), so PostgreSQL reads them
from the flushed rows, once per dataset and transaction (``observe``, one
round trip), and keeps them in ``webhook_dataset_state``:

- ``current``: the dataset as of the last recorded change;
- ``before``: the dataset as it was before the transaction that made that
  change (kept while the same transaction records more events of it);
- field values as md5 digests, so a long description costs 32 characters.

The facets an event is matched by and its ``changes`` are then worked out
here, in Python, for the dataset or one of its resources.

A dataset first seen by the plugin (created before it was installed, or
just now) has no ``before``: its events count as ``matched`` and their
``changes`` are null (unknown).
"""

from __future__ import annotations

from typing import Any

import ckan.model as model
from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

__all__ = ["DATA_FIELDS", "changes", "facets", "forget", "observe"]

# A resource's data changed when one of these did (an upload sets
# last_modified and size; a link, its url).
DATA_FIELDS = frozenset({"url", "url_type", "hash", "size", "last_modified"})

# session.info key: {package id: (before, current)} observed in this
# transaction (CKAN calls notify once all its flushes are done, so one
# observation serves every event of the dataset in the transaction).
_OBSERVED = "webhooks_dataset_states"

# {name: md5 of its JSON value} for the keys of a JSON object.
_DIGESTS = """(SELECT COALESCE(jsonb_object_agg(key, md5(CAST(value AS text))), '{{}}')
              FROM jsonb_each({row}) WHERE key <> 'metadata_modified')"""

# A resource as resource_show shows it: its extras are top-level fields.
_RESOURCE = """(to_jsonb(r) - 'extras')
    || COALESCE(CAST(NULLIF(r.extras, '') AS jsonb), '{}')"""

# CKAN 2.11 keeps dataset extras in a table of their own; 2.12 in the row.
_EXTRAS_TABLE = """
    CROSS JOIN LATERAL (
        SELECT md5(COALESCE(string_agg(
            e.key || '=' || COALESCE(e.value, ''), '&' ORDER BY e.key), '')) AS extras
        FROM package_extra e
        WHERE e.package_id = p.id AND e.state = 'active') x"""


def _observe_statement() -> TextClause:
    table_extras = getattr(model, "PackageExtra", None) is not None
    return text(
        f"""
    WITH observed AS (
        SELECT jsonb_build_object(
            'private', COALESCE(p.private, false), 'org', p.owner_org,
            'name', p.name, 'license_id', p.license_id,
            'groups', g.groups, 'tags', t.tags,
            'formats', r.formats, 'resources', r.resources,
            'fields', {_DIGESTS.format(row="to_jsonb(p)")} || jsonb_build_object(
                'groups', md5(CAST(g.groups AS text)),
                'tags', md5(CAST(t.tags AS text)),
                'resources', md5(CAST(r.resources AS text))
                {", 'extras', x.extras" if table_extras else ""})
        ) AS state
        FROM package p
        CROSS JOIN LATERAL (
            SELECT COALESCE(jsonb_agg(m.group_id ORDER BY m.group_id), '[]') AS groups
            FROM member m JOIN "group" gr ON gr.id = m.group_id
            WHERE m.table_id = p.id AND m.table_name = 'package'
              AND m.state = 'active' AND gr.state = 'active'
              AND NOT gr.is_organization) g
        CROSS JOIN LATERAL (
            SELECT COALESCE(jsonb_agg(tg.name ORDER BY tg.name), '[]') AS tags
            FROM package_tag pt JOIN tag tg ON tg.id = pt.tag_id
            WHERE pt.package_id = p.id AND pt.state = 'active') t
        CROSS JOIN LATERAL (
            SELECT COALESCE(jsonb_agg(DISTINCT upper(r.format))
                       FILTER (WHERE r.format <> ''), '[]') AS formats,
                   COALESCE(jsonb_object_agg(r.id, jsonb_build_object(
                       'format', NULLIF(upper(r.format), ''),
                       'fields', {_DIGESTS.format(row=_RESOURCE)})),
                       '{{}}') AS resources
            FROM resource r
            WHERE r.package_id = p.id AND r.state = 'active') r
        {_EXTRAS_TABLE if table_extras else ""}
        WHERE p.id = :package_id
    )
    INSERT INTO webhook_dataset_state AS s (package_id, txid, before, current)
    SELECT :package_id, txid_current(), NULL, state FROM observed
    ON CONFLICT (package_id) DO UPDATE SET
        before = CASE WHEN s.txid = txid_current() THEN s.before ELSE s.current END,
        current = EXCLUDED.current,
        txid = EXCLUDED.txid
    RETURNING before, current
    """
    )


_OBSERVE: TextClause | None = None


def observe(session: Any, package_id: str) -> tuple[Any, Any]:
    """Save dataset ``package_id``'s state; (before, current) as JSON objects,
    once per transaction. Both are None for a dataset that is gone."""
    global _OBSERVE
    seen = session.info.setdefault(_OBSERVED, {})
    if package_id not in seen:
        if _OBSERVE is None:
            _OBSERVE = _observe_statement()
        row = session.execute(_OBSERVE, {"package_id": package_id}).first()
        seen[package_id] = (row[0], row[1]) if row else (None, None)
    return seen[package_id]


def forget(session: Any) -> None:
    session.info.pop(_OBSERVED, None)


def facets(state: Any, resource_id: str | None) -> dict[str, Any] | None:
    """What filters match (matching.py); for a resource event the resource's
    own format stands for the dataset's formats."""
    if state is None:
        return None
    formats = state["formats"]
    if resource_id is not None:
        resource = state["resources"].get(resource_id) or {}
        formats = [resource["format"]] if resource.get("format") else []
    return {
        "private": state["private"],
        "org": state["org"],
        "name": state["name"],
        "license_id": state["license_id"],
        "groups": state["groups"],
        "tags": state["tags"],
        "formats": formats,
    }


def _fields(state: Any, resource_id: str | None) -> dict[str, str] | None:
    if state is None:
        return None
    if resource_id is None:
        return state["fields"]
    return (state["resources"].get(resource_id) or {}).get("fields")


def changes(before: Any, current: Any, resource_id: str | None) -> list[str] | None:
    """The top-level fields of the dataset (or resource) that changed; None
    when the earlier state is unknown."""
    old, new = _fields(before, resource_id), _fields(current, resource_id)
    if old is None or new is None:
        return None
    return sorted(
        key for key in old.keys() | new.keys() if old.get(key) != new.get(key)
    )
