"""Which webhooks want an event: one SQL query, shared by capture and delivery.

A webhook follows one dataset, one organization, or the whole site, for one
or more topics (``topics``, matched by array overlap). Each kind
is one branch of a UNION ALL with a partial index of its own, so matching is
an index lookup whatever the number of webhooks (``bench/write_path.py``
prints the plan). Site-wide webhooks with filters are found by the values
of their first filter (``first_filter_sql``): a dataset is checked against
the webhooks that ask for one of its groups, tags, formats or its licence,
not against every webhook that asks for something. A dataset (or resource) that
moved is matched by its previous dataset and organization too.

A webhook may also filter by group, tag, resource format and licence
(``filter_*``: any of the listed values; all given fields must match). They
are checked on the dataset as it was before the event's transaction and as
it is after (``dataset_state.py``): a dataset that matches either way is
delivered, and ``filter`` tells the subscriber whether it ``entered`` the
set, ``left`` it, or ``matched`` all along. Events without a dataset
(organizations, groups, custom events) have no facets and reach only
webhooks without filters.
"""

from __future__ import annotations

__all__ = [
    "FILTER_COLUMNS",
    "filters_sql",
    "first_filter_sql",
    "label_sql",
    "matching_webhooks_sql",
    "no_filters_sql",
]

# A site-wide webhook with filters is found by its first filter: the first
# of these columns that is set (one GIN index on the expression, model.py).
# It can only match a dataset that has one of that filter's values, before
# or after the change; the facets' values are looked up together (a tag
# that happens to equal a format's name only adds a candidate, whose
# filters are then checked in full).
FILTER_COLUMNS = ("filter_groups", "filter_tags", "filter_formats", "filter_licenses")
_LIST_FACETS = ("groups", "tags", "formats")


def first_filter_sql(alias: str = "") -> str:
    """The values of a webhook's first filter (null without filters);
    ``alias`` is the table's, with its dot."""
    return f"COALESCE({', '.join(alias + column for column in FILTER_COLUMNS)})"


def no_filters_sql(alias: str = "") -> str:
    return " AND ".join(f"{alias}{column} IS NULL" for column in FILTER_COLUMNS)


def _facet_values(before: str, after: str) -> str:
    """Every value of the facets before and after, as text[] (empty without
    facets)."""
    lists = " || ".join(
        f"COALESCE(({side})->'{facet}', '[]')"
        for side in (before, after)
        for facet in _LIST_FACETS
    )
    return f"""(ARRAY(SELECT DISTINCT jsonb_array_elements_text({lists}))
        || ARRAY[({before})->>'license_id', ({after})->>'license_id'])"""


_MATCHING = """
    SELECT w.id, {label} AS filter FROM webhook w
    WHERE w.active AND w.package_id IS NOT NULL
      AND w.package_id IN ({package_id}, {previous_package_id})
      AND w.topics && {topics}
      AND (w.organization_id IS NULL
           OR w.organization_id IN ({organization_id}, {previous_organization_id}))
      AND {filtered}
    UNION ALL
    SELECT w.id, {label} FROM webhook w
    WHERE w.active AND w.package_id IS NULL AND w.organization_id IS NOT NULL
      AND w.organization_id IN ({organization_id}, {previous_organization_id})
      AND w.topics && {topics}
      AND {filtered}
    UNION ALL
    SELECT w.id, {label} FROM webhook w
    WHERE w.active AND w.package_id IS NULL AND w.organization_id IS NULL
      AND {no_filters}
      AND w.topics && {topics}
    UNION ALL
    SELECT w.id, {label} FROM webhook w
    WHERE w.active AND w.package_id IS NULL AND w.organization_id IS NULL
      AND {first_filter} IS NOT NULL AND {first_filter} && {values}
      AND w.topics && {topics}
      AND {filtered}
"""


def filters_sql(facets: str) -> str:
    """True when webhook ``w``'s filters match ``facets`` (a JSON object:
    ``dataset_state.Facts`` with the groups; or null, matched only by a
    webhook without filters)."""
    return f"""(
        (w.filter_groups IS NULL
         OR COALESCE(({facets})->'groups' ?| w.filter_groups, false))
        AND (w.filter_tags IS NULL
             OR COALESCE(({facets})->'tags' ?| w.filter_tags, false))
        AND (w.filter_formats IS NULL
             OR COALESCE(({facets})->'formats' ?| w.filter_formats, false))
        AND (w.filter_licenses IS NULL
             OR COALESCE(({facets})->>'license_id' = ANY(w.filter_licenses), false)))"""


def _within(facets: str) -> str:
    """``filters_sql`` and the webhook's organization, for entering/leaving."""
    return f"""({filters_sql(facets)} AND (w.organization_id IS NULL
        OR w.organization_id = ({facets})->>'org'))"""


def label_sql(before: str, after: str) -> str:
    """The ``filter`` of webhook ``w`` for an event with these facets."""
    return f"""CASE WHEN ({after}) IS NULL THEN NULL
        WHEN {_within(before)} AND {_within(after)} THEN 'matched'
        WHEN {_within(after)} THEN 'entered'
        WHEN {_within(before)} THEN 'left'
        ELSE 'matched' END"""


def matching_webhooks_sql(
    *,
    topics: str,
    package_id: str,
    previous_package_id: str,
    organization_id: str,
    previous_organization_id: str,
    before: str,
    after: str,
    labelled: bool = True,
) -> str:
    """The query, with SQL expressions (bind parameters or columns) filled in;
    ``before`` and ``after`` are the event's facets. Each row is a webhook
    and its ``filter``: matched, entered, left (null for events without a
    dataset, and when not ``labelled``: a caller that only asks whether
    some webhook wants the event spares PostgreSQL the label's
    expressions)."""
    return _MATCHING.format(
        filtered=f"({filters_sql(before)} OR {filters_sql(after)})",
        label=label_sql(before, after) if labelled else "NULL",
        topics=topics,
        package_id=package_id,
        previous_package_id=previous_package_id,
        organization_id=organization_id,
        previous_organization_id=previous_organization_id,
        no_filters=no_filters_sql("w."),
        first_filter=first_filter_sql("w."),
        values=_facet_values(before, after),
    )
