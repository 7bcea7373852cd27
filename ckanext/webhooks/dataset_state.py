"""A dataset before and after a transaction: what filters look at, and which
fields changed.

Filters (``matching.py``) look at a dataset's organization, groups, tags,
resource formats, licence and privacy, both as they were before a change and
as they are after it; ``dataset/update`` and ``resource/update`` payloads
list the top-level fields that changed. Neither can be read reliably from
CKAN's objects at commit time (CKAN flushes several times per action, and
tags, groups and resources are rows of their own), so PostgreSQL reads them
from the flushed rows, once per dataset and transaction, and keeps them in
``webhook_dataset_state``:

- ``current``: the dataset as of the last recorded change;
- ``before``: the dataset as it was before the transaction that made that
  change;
- a dataset's fields as they are (but for ``metadata_modified``, which
  changes with everything), and its tags, groups, resources and extras as
  md5 digests; each resource's fields as they are.

This module writes SQL, not Python: the observation, the facets an event is
matched by and its ``changes`` are parts of the statement that records the
event (``events.py``), so that a change costs one round trip.

A dataset first seen by the plugin (created before it was installed, or
just now) has no ``before``: its events count as ``matched`` and their
``changes`` are null (unknown).
"""

from __future__ import annotations

import ckan.model as model

__all__ = ["DATA_FIELDS", "facts_sql"]

# A resource's data changed when one of these did (an upload sets
# last_modified and size; a link, its url).
DATA_FIELDS = frozenset({"url", "url_type", "hash", "size", "last_modified"})

# A resource as resource_show shows it: its extras are top-level fields.
_RESOURCE = """((to_jsonb(r) - 'extras' - 'metadata_modified')
    || COALESCE(CAST(NULLIF(r.extras, '') AS jsonb), '{}'))"""

# CKAN 2.11 keeps dataset extras in a table of their own; 2.12 in the row.
_EXTRAS_TABLE = """
    CROSS JOIN LATERAL (
        SELECT md5(COALESCE(string_agg(
            e.key || '=' || COALESCE(e.value, ''), '&' ORDER BY e.key), '')) AS extras
        FROM package_extra e
        WHERE e.package_id = p.id AND e.state = 'active') x"""


def _state_sql(package_id: str) -> str:
    """Common table expressions ending in ``state (before, current)``: one row
    for dataset ``package_id`` (SQL), none for a dataset that is gone.

    CKAN calls ``notify`` once all its flushes are done, so the first event
    of a dataset in a transaction observes it and saves the observation;
    later ones in the same transaction read what was saved.
    """
    table_extras = getattr(model, "PackageExtra", None) is not None
    return f"""
    observed AS (
        INSERT INTO webhook_dataset_state AS s (package_id, txid, before, current)
        SELECT p.id, txid_current(), NULL, jsonb_build_object(
            'private', COALESCE(p.private, false), 'org', p.owner_org,
            'name', p.name, 'license_id', p.license_id,
            'groups', g.groups, 'tags', t.tags,
            'formats', r.formats, 'resources', r.resources,
            'fields', (to_jsonb(p) - 'metadata_modified') || jsonb_build_object(
                'groups', md5(CAST(g.groups AS text)),
                'tags', md5(CAST(t.tags AS text)),
                'resources', md5(CAST(r.resources AS text))
                {", 'extras', x.extras" if table_extras else ""}))
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
                       'fields', {_RESOURCE})),
                       '{{}}') AS resources
            FROM resource r
            WHERE r.package_id = p.id AND r.state = 'active') r
        {_EXTRAS_TABLE if table_extras else ""}
        WHERE p.id = {package_id} AND NOT EXISTS (
            SELECT FROM webhook_dataset_state seen
            WHERE seen.package_id = p.id AND seen.txid = txid_current())
        ON CONFLICT (package_id) DO UPDATE SET
            before = s.current, current = EXCLUDED.current, txid = EXCLUDED.txid
        RETURNING before, current
    ), state AS (
        SELECT before, current FROM observed
        UNION ALL
        SELECT before, current FROM webhook_dataset_state
        WHERE package_id = {package_id} AND txid = txid_current()
    )"""


def facts_sql(package_id: str, resource_id: str) -> str:
    """``_state_sql`` and more, ending in ``facts (before, after, changes)``:
    one row, for an event of dataset ``package_id`` or, when ``resource_id``
    (SQL, text) is not null, of that resource.

    ``before`` and ``after`` are what filters match (matching.py); for a
    resource event the resource's own format stands for the dataset's
    formats, and an unknown ``before`` (a dataset first seen) is taken as
    ``after``. ``changes`` lists the top-level fields of the dataset or
    resource that changed, null when the earlier state is unknown.
    """
    return f"""{_state_sql(package_id)},
    sides AS MATERIALIZED (
        -- Each part once: every "->" on a stored state decompresses it.
        SELECT s.before - 'fields' - 'resources' AS before_facets,
               s.current - 'fields' - 'resources' AS after_facets,
               {_entity("s.before", resource_id)} AS before_entity,
               {_entity("s.current", resource_id)} AS after_entity
        FROM (SELECT) AS one LEFT JOIN state s ON true
    ),
    facts AS MATERIALIZED (
        SELECT COALESCE({_facets("before", resource_id)},
                        {_facets("after", resource_id)}) AS before,
               {_facets("after", resource_id)} AS after,
               {_changes("before", "after", resource_id)} AS changes
        FROM sides
    )"""


def _entity(state: str, resource_id: str) -> str:
    """The dataset's fields, or the resource's format and fields."""
    return f"""CASE WHEN ({resource_id}) IS NULL THEN ({state})->'fields'
        ELSE ({state})->'resources'->({resource_id}) END"""


def _facets(side: str, resource_id: str) -> str:
    formats = f"""CASE WHEN jsonb_typeof({side}_entity->'format') = 'string'
        THEN jsonb_build_array({side}_entity->'format') ELSE '[]' END"""
    return f"""CASE WHEN ({resource_id}) IS NULL THEN {side}_facets
        ELSE {side}_facets || jsonb_build_object('formats', {formats}) END"""


def _changes(old_side: str, new_side: str, resource_id: str) -> str:
    def fields(side: str) -> str:
        return f"""CASE WHEN ({resource_id}) IS NULL THEN {side}_entity
            ELSE {side}_entity->'fields' END"""

    old, new = fields(old_side), fields(new_side)
    return f"""CASE WHEN ({old}) IS NULL OR ({new}) IS NULL THEN NULL ELSE ARRAY(
        SELECT key FROM jsonb_each({new}) AS n (key, value)
        WHERE value IS DISTINCT FROM ({old})->key
        UNION ALL
        SELECT key FROM jsonb_object_keys({old}) AS o (key)
        WHERE NOT ({new}) ? key
        ORDER BY 1) END"""
