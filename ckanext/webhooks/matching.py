"""Which webhooks want an event: one SQL query, shared by capture and delivery.

A webhook follows one dataset, one organization, or the whole site, for one
or more topics (``topics``, matched by array overlap). Each kind
is one branch of a UNION ALL with a partial index of its own, so matching is
an index lookup whatever the number of webhooks (``bench/write_path.py``
prints the plan). Site-wide webhooks with filters are found by the values
of their first filter (``FILTERS``): a dataset is checked against the
webhooks that ask for one of its groups, tags, formats or its licence, not
against every webhook that asks for something. A dataset (or resource) that
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
    "FILTERS",
    "filters_sql",
    "label_sql",
    "matching_webhooks_sql",
    "site_branch_sql",
]

# The filters of a site-wide webhook, in the order that decides which
# branch (and partial GIN index, model.py) finds it: by its first filter.
# A webhook with filters can only match a dataset that has one of the
# values of that first filter, before or after the change.
FILTERS = (
    ("filter_groups", "groups"),
    ("filter_tags", "tags"),
    ("filter_formats", "formats"),
    ("filter_licenses", "license_id"),
)


def site_branch_sql(position: int | None, alias: str = "") -> str:
    """Which site-wide webhooks a branch finds: those whose first filter is
    ``FILTERS[position]``, or (None) those without filters; ``alias`` is
    the table's, with its dot."""
    columns = [f"{alias}{column}" for column, _ in FILTERS]
    if position is None:
        return " AND ".join(f"{column} IS NULL" for column in columns)
    earlier = [f"{column} IS NULL" for column in columns[:position]]
    return " AND ".join([*earlier, f"{columns[position]} IS NOT NULL"])


def _facet_values(facet: str, before: str, after: str) -> str:
    """The values of one facet before and after, as text[] (empty without
    facets)."""
    if facet == "license_id":
        return f"ARRAY[({before})->>'license_id', ({after})->>'license_id']"
    either = (
        f"COALESCE(({before})->'{facet}', '[]') || COALESCE(({after})->'{facet}', '[]')"
    )
    return f"ARRAY(SELECT DISTINCT jsonb_array_elements_text({either}))"


_DATASET_AND_ORGANIZATION = """
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
      AND {filtered}"""

# Site-wide: without filters found by topic, the others by the values of
# their first filter.
_SITE = """
    UNION ALL
    SELECT w.id, {label} FROM webhook w
    WHERE w.active AND w.package_id IS NULL AND w.organization_id IS NULL
      AND {branch} AND {found_by}
      AND w.topics && {topics}
      AND {filtered}"""


def filters_sql(facets: str) -> str:
    """True when webhook ``w``'s filters match ``facets`` (a JSON object of
    ``dataset_state``, or null: then only a webhook without filters)."""
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
) -> str:
    """The query, with SQL expressions (bind parameters or columns) filled in;
    ``before`` and ``after`` are the event's facets. Each row is a webhook
    and its ``filter``: matched, entered, left (null for events without a
    dataset)."""
    common = {
        "label": label_sql(before, after),
        "topics": topics,
        "filtered": f"({filters_sql(before)} OR {filters_sql(after)})",
    }
    site = [_SITE.format(branch=site_branch_sql(None, "w."), found_by="true", **common)]
    for position, (column, facet) in enumerate(FILTERS):
        found_by = f"w.{column} && {_facet_values(facet, before, after)}"
        site.append(
            _SITE.format(
                branch=site_branch_sql(position, "w."), found_by=found_by, **common
            )
        )
    return _DATASET_AND_ORGANIZATION.format(
        package_id=package_id,
        previous_package_id=previous_package_id,
        organization_id=organization_id,
        previous_organization_id=previous_organization_id,
        **common,
    ) + "".join(site)
