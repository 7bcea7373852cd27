"""Who may see this event: the authorization rule applied when a delivery is sent.

Each delivery carries the entity as its webhook's owner may see it at sending
time: ``package_show`` (or ``organization_show`` / ``group_show``) as that
owner, anonymous for anonymous webhooks. What the owner may not see is not
sent. A deleted entity can no longer be shown, so its deletion goes to those
who could have read it, judged by the stricter of its privacy when the event
happened and now.

``ReaderClassViews`` (unless ``ckanext.webhooks.render_per_owner``) renders
an entity once per *class of readers* that core CKAN (2.11, 2.12) shows it
the same way, and decides who may read it in one SQL query per batch.

Datasets (``package_show``, its auth, ``DefaultPermissionLabels``):

- *who may read* depends on the user: an active public dataset anyone; a
  private one sysadmins, users for whom ``organization_list_for_user(
  permission="read")`` lists its organization (a capacity with ``read``, or
  a role of ``ckan.auth.roles_that_cascade_to_sub_groups`` in a parent
  organization), collaborators if ``ckan.auth.allow_dataset_collaborators``
  is on, and its creator if it has no organization. Owners and datasets must
  be active. ``_DATASET_READERS`` restates exactly this rule.
- *what is shown* does not: ``package_dictize`` and the show schema ignore
  the user, except ``plugin_data``: for sysadmins (``ignore_not_sysadmin``)
  and only with ``include_plugin_data``, which deliveries never ask for.

So two classes: ``readers`` (whoever may read, anonymous included) and
``sysadmins``, apart so that nothing for sysadmins only (``plugin_data``, a
schema's ``ignore_not_sysadmin`` field) can ever reach another reader.

Organizations and groups: an active one is public, but its ``package_count``
comes from ``package_search`` as the user, which counts private datasets for
sysadmins, members and collaborators. So: ``sysadmins``; ``public``
(anonymous, and users with no membership in the organization or a parent and
no collaboration in it: all get the public count); the rest one by one.

A class is rendered as a real member of it, the first owner who needs it. If
CKAN refuses that owner what the SQL allowed, a rule unknown to the SQL is at
work, and that entity goes back to one ``*_show`` per owner.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan import authz
from ckan.model.group import MAX_RECURSES
from sqlalchemy import text

from ckanext.webhooks.model import Webhook, WebhookEvent
from ckanext.webhooks.vocabulary import PING

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import TextClause

__all__ = ["EntityViews", "Hidden", "ReaderClassViews"]

log = logging.getLogger(__name__)

SYSADMINS = "sysadmins"
READERS = "readers"  # of a dataset: all who may read it but sysadmins
PUBLIC = "public"  # of an organization or group: all who see the public count
PER_OWNER = "per owner"  # rendered as each owner, as render_per_owner does


class Hidden(Exception):
    """The webhook's owner may not see this event: it is not sent."""


class EntityViews:
    """What each webhook owner may see of events: ``*_show`` as each owner."""

    def __init__(self) -> None:
        self._shown: dict[tuple[str, str, str | None], Any] = {}
        self._users: dict[str, model.User | None] = {}

    def prepare(self, wanted: Iterable[tuple[WebhookEvent, str | None]]) -> None:
        """Learn in advance what (event, owner) pairs will be asked for."""

    def entity(self, event: WebhookEvent, webhook: Webhook) -> Any:
        """The payload's ``entity`` for ``webhook``, or raise Hidden."""
        snapshot = json.loads(event.snapshot or "{}")
        if event.topic == PING:
            return snapshot
        if event.entity_type == "custom":
            if event.package_id:  # about a dataset: only for those who may read it
                self._require_readable(event, webhook.owner_id)
            return snapshot
        if event.topic.endswith("/delete"):
            return self._deleted(event, webhook, snapshot)
        try:
            if event.entity_type in ("organization", "group"):
                return self._group(event, webhook.owner_id)
            pkg = self._package(event, webhook.owner_id)
            if event.entity_type == "dataset":
                return pkg
            for resource in pkg.get("resources", []):
                if resource["id"] == event.entity_id:
                    return resource
            raise Hidden("resource gone")
        except Hidden:
            # Deleted before this delivery: the event still happened, so it
            # goes out with what is known of the entity - to whoever could
            # have read it. Hidden (private, draft) stays hidden.
            if _deleted_since(event):
                return self._deleted(event, webhook, snapshot)
            raise

    def _user(self, user_id: str | None) -> model.User | None:
        if user_id is None:
            return None
        if user_id not in self._users:
            user = model.User.get(user_id)
            self._users[user_id] = user if user and user.state == "active" else None
        return self._users[user_id]

    def _show(self, action: str, data: dict[str, Any], owner_id: str | None) -> Any:
        """``action`` run as the webhook's owner (anonymous for anonymous hooks)."""
        key = (action, data["id"], owner_id)
        if key not in self._shown:
            self._shown[key] = self._run_as_owner(action, data, owner_id)
        value = self._shown[key]
        if isinstance(value, Hidden):
            raise value
        return value

    def _run_as_owner(
        self, action: str, data: dict[str, Any], owner_id: str | None
    ) -> Any:
        user = self._user(owner_id)
        if owner_id is not None and user is None:
            return Hidden("owner is gone")
        context = {
            "user": user.name if user else "",
            "auth_user_obj": user,
            "ignore_auth": False,
            "use_cache": False,
        }
        try:
            shown = tk.get_action(action)(context, dict(data))
        except (tk.NotAuthorized, tk.ObjectNotFound) as error:
            return Hidden(str(error) or "hidden")
        if shown.get("state") != "active":
            return Hidden("not active")
        return shown

    def _require_readable(self, event: WebhookEvent, owner_id: str | None) -> None:
        self._package(event, owner_id)

    def _package(self, event: WebhookEvent, owner_id: str | None) -> dict[str, Any]:
        return self._show("package_show", {"id": event.package_id}, owner_id)

    def _group(self, event: WebhookEvent, owner_id: str | None) -> dict[str, Any]:
        return self._show(*_group_request(event), owner_id)

    def _deleted(self, event: WebhookEvent, webhook: Webhook, snapshot: Any) -> Any:
        if not self._may_know_of_deletion(event, webhook.owner_id):
            raise Hidden("private")
        return {**snapshot, "state": "deleted"}

    def _may_know_of_deletion(self, event: WebhookEvent, owner_id: str | None) -> bool:
        """Readers of the dataset by the stricter of its privacy then and now."""
        pkg = model.Package.get(event.package_id) if event.package_id else None
        private_now = pkg is not None and bool(pkg.private)
        if not (event.private or private_now):
            return True
        user = self._user(owner_id)
        if user is None:
            return False
        if user.sysadmin:
            return True
        organizations = {event.organization_id}
        if private_now:
            organizations.add(pkg.owner_org)
        return all(
            org is not None
            and authz.has_user_permission_for_group_or_org(org, user.name, "read")
            for org in organizations
        )


class ReaderClassViews(EntityViews):
    """Entities rendered once per class of readers; access decided in SQL.

    ``carried``: the views of the previous batch by (event id, class), kept in
    ``rendered`` for the next. An event's deliveries often span two batches,
    and its view was taken after the event, so it is still valid; who may
    read it is decided afresh in each batch.
    """

    def __init__(self, carried: dict[tuple[str, str], Any] | None = None) -> None:
        super().__init__()
        self._datasets = _Decisions(_DATASET_READERS)
        self._groups = _Decisions(_GROUP_READERS)
        self._carried = carried or {}
        self.rendered: dict[tuple[str, str], Any] = {}
        self._by_class: dict[tuple[str, str, str], Any] = {}
        self._per_owner: set[str] = set()  # entities CKAN judged unlike the SQL

    def prepare(self, wanted: Iterable[tuple[WebhookEvent, str | None]]) -> None:
        """One query for the datasets, one for the groups, of all these pairs."""
        datasets: set[str] = set()
        groups: set[str] = set()
        owners: set[str | None] = set()
        for event, owner_id in wanted:
            if event.topic == PING or event.topic.endswith("/delete"):
                continue
            if event.entity_type in ("organization", "group"):
                groups.add(event.entity_id)
            elif event.package_id:
                datasets.add(event.package_id)
            else:
                continue
            owners.add(owner_id)
        self._datasets.decide(datasets, owners)
        self._groups.decide(groups, owners)

    def _require_readable(self, event: WebhookEvent, owner_id: str | None) -> None:
        if self._datasets(event.package_id, owner_id) is None:
            raise Hidden("may not read the dataset")

    def _package(self, event: WebhookEvent, owner_id: str | None) -> dict[str, Any]:
        reader_class = self._datasets(event.package_id, owner_id)
        if reader_class is None:
            raise Hidden("may not read the dataset")
        data = {"id": event.package_id}
        return self._view(event, "package_show", data, reader_class, owner_id)

    def _group(self, event: WebhookEvent, owner_id: str | None) -> dict[str, Any]:
        action, data = _group_request(event)
        reader_class = self._groups(event.entity_id, owner_id)
        if reader_class is None:
            raise Hidden("owner is gone, or the group is not active")
        return self._view(event, action, data, reader_class, owner_id)

    def _view(
        self,
        event: WebhookEvent,
        action: str,
        data: dict[str, Any],
        reader_class: str,
        owner_id: str | None,
    ) -> Any:
        """``action`` as ``reader_class`` for ``event``: carried over from the
        previous batch, or run once as the first owner of the class to ask."""
        if reader_class == PER_OWNER or data["id"] in self._per_owner:
            return self._show(action, data, owner_id)
        key = (event.id, reader_class)
        if key in self._carried:
            self.rendered[key] = self._carried[key]
            return self.rendered[key]
        rendering = (action, data["id"], reader_class)
        if rendering not in self._by_class:
            shown = self._run_as_owner(action, data, owner_id)
            if isinstance(shown, Hidden):  # CKAN's rule is not the SQL's here
                log.info("%s %s: %s, shown per owner", action, data["id"], shown)
                self._per_owner.add(data["id"])
                self._shown[(action, data["id"], owner_id)] = shown
                raise shown
            self._by_class[rendering] = shown
        self.rendered[key] = self._by_class[rendering]
        return self.rendered[key]


def _group_request(event: WebhookEvent) -> tuple[str, dict[str, Any]]:
    # Members and datasets are left out: members-only information stays
    # with members, and the dataset list is what dataset/* events are for.
    return f"{event.entity_type}_show", {
        "id": event.entity_id,
        "include_datasets": False,
        "include_users": False,
        "include_followers": False,
        "include_groups": False,
    }


def _deleted_since(event: WebhookEvent) -> bool:
    """Deleted or purged since the event (not merely hidden from the owner)."""
    if event.entity_type in ("organization", "group"):
        objs = [model.Group.get(event.entity_id)]
    else:
        objs = [model.Package.get(event.package_id)]
        if event.entity_type == "resource":
            objs.append(model.Resource.get(event.entity_id))
    return any(obj is None or obj.state == "deleted" for obj in objs)


class _Decisions:
    """The reader class of each (entity, owner) pair, or None: may not read.

    Pairs are decided in bulk, every entity by every owner, by one query; a
    pair asked for that was not is decided on its own.
    """

    def __init__(self, query: TextClause) -> None:
        self._query = query
        self._classes: dict[tuple[str, str | None], str | None] = {}

    def decide(self, subjects: set[str], owners: set[str | None]) -> None:
        if not subjects or not owners:
            return
        self._classes.update(((s, o), None) for s in subjects for o in owners)
        params = {
            **_rule_parameters(),
            "subjects": sorted(subjects),
            "owners": sorted(owner for owner in owners if owner is not None),
        }
        for subject, owner, reader_class in model.Session.execute(self._query, params):
            if owner in owners:
                self._classes[(subject, owner)] = reader_class

    def __call__(self, subject: str, owner: str | None) -> str | None:
        if (subject, owner) not in self._classes:
            self.decide({subject}, {owner})
        return self._classes[(subject, owner)]


# Active owners among :owners; the parents of the organizations in ``start``,
# theirs and so on, as deep as CKAN's own walks (ckan.model.group).
_OWNERS_AND_LINEAGE = """
    owner AS (
        SELECT id, COALESCE(sysadmin, false) AS sysadmin FROM "user"
        WHERE id = ANY(CAST(:owners AS text[])) AND state = 'active'),
    lineage (org_id, ancestor_id, depth) AS (
        SELECT m.group_id, m.table_id, 0 FROM member m
        WHERE m.group_id IN (SELECT id FROM start)
          AND m.table_name = 'group' AND m.state = 'active'
        UNION ALL
        SELECT l.org_id, m.table_id, l.depth + 1
        FROM lineage l JOIN member m ON m.group_id = l.ancestor_id
        WHERE m.table_name = 'group' AND m.state = 'active'
          AND l.depth < :max_depth),
    membership AS (
        SELECT m.group_id, m.table_id AS user_id, m.capacity FROM member m
        WHERE m.table_name = 'user' AND m.state = 'active'
          AND m.table_id IN (SELECT id FROM owner))
"""

# Who may read each active dataset, and as which class: the rule of
# DefaultPermissionLabels and organization_list_for_user(permission="read").
_DATASET_READERS = text(
    f"""
    WITH RECURSIVE dataset AS (
        SELECT id, owner_org, creator_user_id, COALESCE(private, false) AS private
        FROM package WHERE id = ANY(CAST(:subjects AS text[])) AND state = 'active'),
    start AS (
        SELECT g.id FROM "group" g JOIN dataset d ON d.owner_org = g.id
        WHERE d.private AND g.is_organization AND g.state = 'active'),
    {_OWNERS_AND_LINEAGE},
    org_reader (org_id, user_id) AS (
        SELECT group_id, user_id FROM membership
        WHERE group_id IN (SELECT id FROM start)
          AND capacity = ANY(CAST(:read_roles AS text[]))
        UNION
        SELECT l.org_id, m.user_id FROM lineage l
        JOIN "group" g ON g.id = l.org_id AND g.type = 'organization'
        JOIN membership m ON m.group_id = l.ancestor_id
        WHERE m.capacity = ANY(CAST(:cascading_roles AS text[])))
    SELECT d.id, o.id, CASE WHEN o.sysadmin THEN :sysadmins ELSE :readers END
    FROM dataset d JOIN owner o ON (
        NOT d.private OR o.sysadmin
        OR (d.owner_org, o.id) IN (SELECT org_id, user_id FROM org_reader)
        OR (COALESCE(d.owner_org, '') = '' AND d.creator_user_id = o.id)
        OR (CAST(:collaborators AS boolean) AND EXISTS (
            SELECT 1 FROM package_member pm
            WHERE pm.package_id = d.id AND pm.user_id = o.id)))
    UNION ALL
    SELECT d.id, NULL, :readers FROM dataset d WHERE NOT d.private
    """
)

# The class of each owner for each active organization or group: sysadmins;
# one by one whoever has a membership in the organization or a parent, or
# collaborates on one of its datasets; the public count for everyone else.
_GROUP_READERS = text(
    f"""
    WITH RECURSIVE subject AS (
        SELECT id, is_organization FROM "group"
        WHERE id = ANY(CAST(:subjects AS text[])) AND state = 'active'),
    start AS (SELECT id FROM subject WHERE is_organization),
    {_OWNERS_AND_LINEAGE},
    related (org_id, user_id) AS (
        SELECT group_id, user_id FROM membership
        WHERE group_id IN (SELECT id FROM start)
        UNION
        SELECT l.org_id, m.user_id
        FROM lineage l JOIN membership m ON m.group_id = l.ancestor_id
        UNION
        SELECT p.owner_org, pm.user_id
        FROM package p JOIN package_member pm ON pm.package_id = p.id
        WHERE CAST(:collaborators AS boolean)
          AND p.owner_org IN (SELECT id FROM start)
          AND pm.user_id IN (SELECT id FROM owner))
    SELECT s.id, o.id, CASE
        WHEN o.sysadmin THEN :sysadmins
        WHEN (s.id, o.id) IN (SELECT org_id, user_id FROM related) THEN :per_owner
        ELSE :public END
    FROM subject s CROSS JOIN owner o
    UNION ALL
    SELECT s.id, NULL, :public FROM subject s
    """
)


def _rule_parameters() -> dict[str, Any]:
    """The site's settings of CKAN's reading rule, as the SQL takes them."""
    read_roles = authz.get_roles_with_permission("read")
    cascading = authz.check_config_permission("roles_that_cascade_to_sub_groups")
    collaborators = authz.check_config_permission("allow_dataset_collaborators")
    return {
        "read_roles": read_roles,
        "cascading_roles": [r for r in tk.aslist(cascading) if r in read_roles],
        "collaborators": bool(collaborators),
        "max_depth": MAX_RECURSES,
        "sysadmins": SYSADMINS,
        "readers": READERS,
        "public": PUBLIC,
        "per_owner": PER_OWNER,
    }
