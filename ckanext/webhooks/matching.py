"""Which webhooks want an event: one SQL query, shared by capture and delivery.

A webhook follows one dataset, one organization, or the whole site. Each kind
is one branch of a UNION ALL with a partial index of its own, so matching is
an index lookup whatever the number of webhooks (``bench/write_path.py``
prints the plan). A dataset (or resource) that moved is matched by its
previous dataset and organization too.
"""

from __future__ import annotations

__all__ = ["matching_webhooks_sql"]

_MATCHING = """
    SELECT w.id FROM webhook w
    WHERE w.active AND w.package_id IS NOT NULL
      AND w.package_id IN ({package_id}, {previous_package_id})
      AND w.topic = ANY({topics})
      AND (w.organization_id IS NULL
           OR w.organization_id IN ({organization_id}, {previous_organization_id}))
    UNION ALL
    SELECT w.id FROM webhook w
    WHERE w.active AND w.package_id IS NULL AND w.organization_id IS NOT NULL
      AND w.organization_id IN ({organization_id}, {previous_organization_id})
      AND w.topic = ANY({topics})
    UNION ALL
    SELECT w.id FROM webhook w
    WHERE w.active AND w.package_id IS NULL AND w.organization_id IS NULL
      AND w.topic = ANY({topics})
"""


def matching_webhooks_sql(
    *,
    topics: str,
    package_id: str,
    previous_package_id: str,
    organization_id: str,
    previous_organization_id: str,
) -> str:
    """The query, with SQL expressions (bind parameters or columns) filled in."""
    return _MATCHING.format(
        topics=topics,
        package_id=package_id,
        previous_package_id=previous_package_id,
        organization_id=organization_id,
        previous_organization_id=previous_organization_id,
    )
