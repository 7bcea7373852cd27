"""A dataset before and after a transaction: what filters look at, and which
fields changed.

Filters (``matching.py``) look at a dataset's organization, groups, tags,
resource formats, licence and privacy, both as they were before a change and
as they are after it; ``dataset/update`` and ``resource/update`` payloads
list the top-level fields that changed. Neither can be read reliably from
CKAN's objects at commit time (CKAN flushes several times per action, and
tags, groups and resources are rows of their own), so PostgreSQL reads them
from the flushed rows, inside the statement that writes the event
(``events.py``), and keeps them in ``webhook_dataset_state``:

- ``current``: the dataset as of the last recorded change;
- ``before``: the dataset as it was before the transaction that made that
  change (kept while the same transaction records more events of it);
- field values as md5 digests, so a long description costs 32 characters.

A dataset first seen by the plugin (created before it was installed, or
just now) has no ``before``: its events count as ``matched`` and their
``changes`` are null (unknown).
"""

from __future__ import annotations

import ckan.model as model

__all__ = ["DATA_FIELDS", "observe_sql"]

# A resource's data changed when one of these did (an upload sets
# last_modified and size; a link, its url).
DATA_FIELDS = frozenset({"url", "url_type", "hash", "size", "last_modified"})

# {name: md5 of its JSON value} for the keys of a JSON object.
_DIGESTS = """(SELECT COALESCE(jsonb_object_agg(key, md5(CAST(value AS text))), '{{}}')
              FROM jsonb_each({row}) WHERE key NOT IN ('metadata_modified'))"""

# A resource as resource_show shows it: its extras are top-level fields.
_RESOURCE = """(to_jsonb(r) - 'extras')
    || COALESCE(CAST(NULLIF(r.extras, '') AS jsonb), '{}')"""

_GROUPS = """COALESCE((
    SELECT jsonb_agg(m.group_id ORDER BY m.group_id)
    FROM member m JOIN "group" g ON g.id = m.group_id
    WHERE m.table_id = p.id AND m.table_name = 'package' AND m.state = 'active'
      AND g.state = 'active' AND NOT g.is_organization), '[]')"""

_TAGS = """COALESCE((
    SELECT jsonb_agg(t.name ORDER BY t.name)
    FROM package_tag pt JOIN tag t ON t.id = pt.tag_id
    WHERE pt.package_id = p.id AND pt.state = 'active'), '[]')"""

_FORMATS = """COALESCE((
    SELECT jsonb_agg(DISTINCT upper(r.format))
    FROM resource r
    WHERE r.package_id = p.id AND r.state = 'active' AND r.format <> ''), '[]')"""

_RESOURCES = f"""COALESCE((
    SELECT jsonb_object_agg(r.id, jsonb_build_object(
        'format', NULLIF(upper(r.format), ''),
        'fields', {_DIGESTS.format(row=_RESOURCE)}))
    FROM resource r
    WHERE r.package_id = p.id AND r.state = 'active'), '{{}}')"""

# CKAN 2.11 keeps dataset extras in a table of their own; 2.12 in the row.
_EXTRAS_TABLE = """md5(COALESCE((
    SELECT string_agg(e.key || '=' || COALESCE(e.value, ''), '&' ORDER BY e.key)
    FROM package_extra e
    WHERE e.package_id = p.id AND e.state = 'active'), ''))"""


def _state() -> str:
    """What filters look at in package ``p``, as one JSON object."""
    return f"""
    jsonb_build_object(
        'private', COALESCE(p.private, false),
        'org', p.owner_org,
        'name', p.name,
        'license_id', p.license_id,
        'groups', {_GROUPS},
        'tags', {_TAGS},
        'formats', {_FORMATS},
        'resources', {_RESOURCES}
    )"""


def _with_fields(state: str) -> str:
    """The dataset's top-level field digests, groups and tags among them."""
    extras = (
        f", 'extras', {_EXTRAS_TABLE}"
        if getattr(model, "PackageExtra", None) is not None
        else ""
    )
    return f"""{state} || jsonb_build_object('fields',
        {_DIGESTS.format(row="to_jsonb(p)")} || jsonb_build_object(
            'groups', md5(CAST({_GROUPS} AS text)),
            'tags', md5(CAST({_TAGS} AS text)),
            'resources', md5(CAST({_RESOURCES} AS text)){extras}))"""


def _facets(state: str) -> str:
    """What filters match, from a saved state; for a resource event the
    resource's own format stands for the dataset's formats."""
    return f"""CASE WHEN {state} IS NULL THEN NULL ELSE jsonb_build_object(
        'private', {state}->'private', 'org', {state}->'org',
        'name', {state}->'name', 'license_id', {state}->'license_id',
        'groups', {state}->'groups', 'tags', {state}->'tags',
        'formats', CASE WHEN CAST(:resource_id AS text) IS NULL
            THEN {state}->'formats'
            ELSE jsonb_build_array({state}->'resources'->:resource_id->'format')
            END) END"""


def _fields(state: str) -> str:
    return f"""CASE WHEN CAST(:resource_id AS text) IS NULL
        THEN {state}->'fields'
        ELSE {state}->'resources'->:resource_id->'fields' END"""


_CHANGES = """CASE WHEN saved.before IS NULL THEN NULL ELSE ARRAY(
        SELECT key FROM jsonb_each(COALESCE({after}, '{{}}')) AS now_(key, value)
        WHERE value IS DISTINCT FROM {before}->key
        UNION
        SELECT key FROM jsonb_each(COALESCE({before}, '{{}}')) AS then_(key, value)
        WHERE NOT COALESCE({after}, '{{}}') ? key
        ORDER BY 1) END"""


def observe_sql() -> str:
    """CTEs that save dataset ``:package_id``'s state and end in ``facets``
    (one row: ``before``, ``after``, ``changes``), for the dataset or, with
    ``:resource_id``, one of its resources. The dataset may be gone (purged):
    then all three are null."""
    return f"""
    observed AS (
        SELECT (SELECT {_with_fields(_state())}
                FROM package p WHERE p.id = :package_id) AS state
    ), saved AS (
        INSERT INTO webhook_dataset_state AS s (package_id, txid, before, current)
        SELECT :package_id, txid_current(), NULL, state
        FROM observed WHERE state IS NOT NULL
        ON CONFLICT (package_id) DO UPDATE SET
            before = CASE WHEN s.txid = txid_current() THEN s.before
                          ELSE s.current END,
            current = EXCLUDED.current,
            txid = EXCLUDED.txid
        RETURNING before, current
    ), facets AS (
        SELECT {_facets("saved.before")} AS before,
               {_facets("saved.current")} AS after,
               {
        _CHANGES.format(before=_fields("saved.before"), after=_fields("saved.current"))
    } AS changes
        FROM (SELECT 1) AS one LEFT JOIN saved ON true
    )"""
