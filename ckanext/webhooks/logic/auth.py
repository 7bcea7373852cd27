"""Who may do what with webhooks.

``ckanext.webhooks.minimum_auth`` is the least role needed for any webhook
action. On top of it, a webhook created by a logged-in user is controlled by
that user and by sysadmins only; one created anonymously is controlled by
whoever holds its id (the original extension's design).
"""

from __future__ import annotations

import re
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict

from ckanext.webhooks import config as cfg
from ckanext.webhooks.model import Webhook

__all__ = [
    "webhook_create",
    "webhook_delete",
    "webhook_delivery_list",
    "webhook_event_publish",
    "webhook_list",
    "webhook_redeliver",
    "webhook_rotate_secret",
    "webhook_show",
    "webhook_test",
    "webhook_topic_list",
    "webhook_update",
]

_ROLES = {"editor": ("admin", "editor"), "admin": ("admin",)}
# Webhook ids come from secrets.token_urlsafe: URL-safe base64 letters.
_POSSIBLE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def _user(context: Context) -> model.User | None:
    user = context.get("auth_user_obj")
    if isinstance(user, model.User):
        return user
    name = context.get("user")
    return model.User.get(name) if name else None


def has_role_in_some_organization(user: model.User, roles: tuple[str, ...]) -> bool:
    return (
        model.Session.query(model.Member)
        .join(model.Group, model.Group.id == model.Member.group_id)
        .filter(
            model.Member.table_name == "user",
            model.Member.table_id == user.id,
            model.Member.state == "active",
            model.Member.capacity.in_(roles),
            model.Group.is_organization.is_(True),
            model.Group.state == "active",
        )
        .first()
        is not None
    )


def meets_minimum_auth(context: Context) -> AuthResult:
    level = cfg.minimum_auth()
    if level == "none":
        return {"success": True}
    user = _user(context)
    if user is None:
        return {"success": False, "msg": tk._("You must be logged in to use webhooks")}
    if user.sysadmin:
        return {"success": True}
    if level == "sysadmin":
        return {"success": False, "msg": tk._("Only sysadmins may use webhooks")}
    if has_role_in_some_organization(user, _ROLES[level]):
        return {"success": True}
    return {
        "success": False,
        "msg": tk._("You must be {role} of an organization to use webhooks").format(
            role="an admin" if level == "admin" else "an editor or admin"
        ),
    }


def may_control(context: Context, webhook: Webhook) -> bool:
    if webhook.owner_id is None:
        return True
    user = _user(context)
    return user is not None and (user.sysadmin or user.id == webhook.owner_id)


def _webhook(webhook_id: Any) -> Webhook | None:
    """The webhook the action will act on; None for what cannot be an id.

    Auth runs before validation, so the id is normalised here exactly as the
    ``webhook_string`` validator will (``str.strip``): otherwise " <id>"
    would pass as unknown here and then reach another user's webhook. A NUL
    or a lone surrogate must not reach the database (a 500): validation
    reports it instead.
    """
    if not isinstance(webhook_id, str):
        return None
    webhook_id = webhook_id.strip()
    if not _POSSIBLE_ID.fullmatch(webhook_id):
        return None
    return model.Session.get(Webhook, webhook_id)


def _control(context: Context, data_dict: DataDict) -> AuthResult:
    result = meets_minimum_auth(context)
    if not result["success"]:
        return result
    webhook = _webhook(data_dict.get("id"))
    if webhook is not None and not may_control(context, webhook):
        return {"success": False, "msg": tk._("This webhook belongs to another user")}
    return {"success": True}


@tk.auth_allow_anonymous_access
def webhook_create(context: Context, data_dict: DataDict) -> AuthResult:
    return meets_minimum_auth(context)


@tk.auth_allow_anonymous_access
def webhook_show(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_update(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_delete(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_delivery_list(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_test(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_rotate_secret(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_redeliver(context: Context, data_dict: DataDict) -> AuthResult:
    # The action checks each delivery's webhook with webhook_update.
    return meets_minimum_auth(context)


def webhook_list(context: Context, data_dict: DataDict) -> AuthResult:
    if _user(context) is None:
        return {"success": False, "msg": tk._("Log in to list your webhooks")}
    return meets_minimum_auth(context)


@tk.auth_allow_anonymous_access
def webhook_topic_list(context: Context, data_dict: DataDict) -> AuthResult:
    return {"success": True}


def webhook_event_publish(context: Context, data_dict: DataDict) -> AuthResult:
    user = _user(context)
    if user is not None and (user.sysadmin or user.name in cfg.publishers()):
        return {"success": True}
    return {
        "success": False,
        "msg": tk._("Only sysadmins and ckanext.webhooks.publishers may publish"),
    }
