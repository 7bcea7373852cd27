"""Who may see this event: the authorization rule applied when a delivery is sent.

Each delivery carries the entity as its webhook's owner may see it at sending
time: ``package_show`` (or ``organization_show`` / ``group_show``) run as that
owner, anonymous for anonymous webhooks. What the owner may not see is not
sent. A deleted entity can no longer be shown, so its deletion goes to those
who could have read it, judged by the stricter of its privacy when the event
happened and now.
"""

from __future__ import annotations

import json
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan import authz

from ckanext.webhooks.model import Webhook, WebhookEvent
from ckanext.webhooks.vocabulary import PING

__all__ = ["EntityViews", "Hidden"]


class Hidden(Exception):
    """The webhook's owner may not see this event: it is not sent."""


class EntityViews:
    """What each webhook owner may see of events, computed once per batch."""

    def __init__(self) -> None:
        self._shown: dict[tuple[str, str, str | None], Any] = {}
        self._users: dict[str, model.User | None] = {}

    def entity(self, event: WebhookEvent, webhook: Webhook) -> Any:
        """The payload's ``entity`` for ``webhook``, or raise Hidden."""
        snapshot = json.loads(event.snapshot or "{}")
        if event.topic == PING:
            return snapshot
        if event.entity_type == "custom":
            if event.package_id:  # about a dataset: only for those who may read it
                self._package(event.package_id, webhook.owner_id)
            return snapshot
        if event.topic.endswith("/delete"):
            return self._deleted(event, webhook, snapshot)
        try:
            if event.entity_type in ("organization", "group"):
                return self._group(event, webhook.owner_id)
            pkg = self._package(event.package_id, webhook.owner_id)
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

    def _package(self, package_id: str, owner_id: str | None) -> dict[str, Any]:
        return self._show("package_show", {"id": package_id}, owner_id)

    def _group(self, event: WebhookEvent, owner_id: str | None) -> dict[str, Any]:
        # Members and datasets are left out: members-only information stays
        # with members, and the dataset list is what dataset/* events are for.
        return self._show(
            f"{event.entity_type}_show",
            {
                "id": event.entity_id,
                "include_datasets": False,
                "include_users": False,
                "include_followers": False,
                "include_groups": False,
            },
            owner_id,
        )

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


def _deleted_since(event: WebhookEvent) -> bool:
    """Deleted or purged since the event (not merely hidden from the owner)."""
    if event.entity_type in ("organization", "group"):
        objs = [model.Group.get(event.entity_id)]
    else:
        objs = [model.Package.get(event.package_id)]
        if event.entity_type == "resource":
            objs.append(model.Resource.get(event.entity_id))
    return any(obj is None or obj.state == "deleted" for obj in objs)
