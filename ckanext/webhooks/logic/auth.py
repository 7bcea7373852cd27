"""Who may do what with webhooks: every such rule of the extension lives here.

``ckanext.webhooks.minimum_auth`` is the least role needed for any webhook
action. On top of it, a webhook created by a logged-in user is controlled by
that user and by sysadmins only; one created anonymously is controlled by
whoever holds its id (the original extension's design).

A webhook the caller may not control is reported exactly like one that does
not exist (``ObjectNotFound``, same message), so ids, owners and existence
never leak. Only failures that do not depend on the webhook (the caller's
role under ``minimum_auth``) are ``NotAuthorized``.
"""

from __future__ import annotations

import re
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict

from ckanext.webhooks import config as cfg
from ckanext.webhooks.model import Webhook
from ckanext.webhooks.vocabulary import GONE_REASON

__all__ = [
    "webhook_consent",
    "webhook_create",
    "webhook_delete",
    "webhook_delivery_list",
    "webhook_delivery_pause",
    "webhook_delivery_resume",
    "webhook_event_list",
    "webhook_event_publish",
    "webhook_list",
    "webhook_recover",
    "webhook_redeliver",
    "webhook_renew",
    "webhook_rotate_secret",
    "webhook_show",
    "webhook_signing_keys",
    "webhook_status_show",
    "webhook_test",
    "webhook_topic_list",
    "webhook_update",
    "webhook_verify",
]

_ROLES = {"editor": ("admin", "editor"), "admin": ("admin",)}
# Webhook ids come from secrets.token_urlsafe: URL-safe base64 letters.
_POSSIBLE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def caller(context: Context) -> model.User | None:
    """The user an action runs for; None for anonymous callers."""
    user = context.get("auth_user_obj")
    if isinstance(user, model.User):
        return user
    name = context.get("user")
    return model.User.get(name) if name else None


def is_sysadmin(context: Context) -> bool:
    user = caller(context)
    return user is not None and bool(user.sysadmin)


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
    user = caller(context)
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
    """Named by its id: anonymous webhooks belong to whoever holds the id."""
    if webhook.owner_id is None:
        return True
    user = caller(context)
    return user is not None and (user.sysadmin or user.id == webhook.owner_id)


def may_act_unnamed(context: Context, webhook: Webhook) -> bool:
    """Reached without naming its id (by an event id, say): own webhooks only.

    Holding an event id proves nothing about who controls the webhooks that
    received it, so anonymous webhooks are never reached this way.
    """
    user = caller(context)
    if user is None:
        return False
    return bool(user.sysadmin) or user.id == webhook.owner_id


def may_undo_gone(context: Context, webhook: Webhook) -> bool:
    """A 410 Gone is final for anonymous webhooks: their receiver said so,
    and holding the id must not be enough to re-enable or ping it."""
    if webhook.disabled_reason == GONE_REASON and webhook.owner_id is None:
        return is_sysadmin(context)
    return may_control(context, webhook)


def normalise_id(webhook_id: Any) -> str | None:
    """The id as validation will see it; None for what cannot be an id.

    Auth runs before validation, so the id is normalised here exactly as the
    ``webhook_string`` validator will (``str.strip``): otherwise " <id>"
    would pass here as unknown and then reach another user's webhook. A NUL
    or a lone surrogate must not reach the database (a 500): validation
    reports it instead.
    """
    if not isinstance(webhook_id, str):
        return None
    webhook_id = webhook_id.strip()
    return webhook_id if _POSSIBLE_ID.fullmatch(webhook_id) else None


def controlled_webhook(context: Context, webhook_id: Any) -> Webhook:
    """The webhook ``webhook_id`` if the caller controls it; else ObjectNotFound."""
    normalised = normalise_id(webhook_id)
    webhook = model.Session.get(Webhook, normalised) if normalised else None
    if webhook is None or not may_control(context, webhook):
        raise tk.ObjectNotFound(tk._("Webhook not found"))
    return webhook


def _check_named(context: Context, webhook_id: Any) -> None:
    """Refuse, as missing, a webhook named by id that the caller may not control.

    What cannot be an id is left to validation, which names the problem.
    """
    if normalise_id(webhook_id) is not None:
        controlled_webhook(context, webhook_id)


def _control(context: Context, data_dict: DataDict) -> AuthResult:
    result = meets_minimum_auth(context)
    if result["success"]:
        _check_named(context, data_dict.get("id"))
    return result


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
def webhook_recover(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_event_list(context: Context, data_dict: DataDict) -> AuthResult:
    # What each caller may see of the events is decided per event, as for
    # deliveries (delivery/visibility.py).
    return meets_minimum_auth(context)


@tk.auth_allow_anonymous_access
def webhook_verify(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_renew(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_rotate_secret(context: Context, data_dict: DataDict) -> AuthResult:
    return _control(context, data_dict)


@tk.auth_allow_anonymous_access
def webhook_redeliver(context: Context, data_dict: DataDict) -> AuthResult:
    # Which deliveries the caller may reach is decided per webhook by the
    # action with may_control / may_act_unnamed.
    result = meets_minimum_auth(context)
    if result["success"]:
        _check_named(context, data_dict.get("webhook_id"))
    return result


def webhook_list(context: Context, data_dict: DataDict) -> AuthResult:
    if caller(context) is None:
        return {"success": False, "msg": tk._("Log in to list your webhooks")}
    return meets_minimum_auth(context)


@tk.auth_allow_anonymous_access
def webhook_consent(context: Context, data_dict: DataDict) -> AuthResult:
    # A receiver is no user of the site: the callback token it was sent is
    # its proof, checked by the action whatever minimum_auth says.
    return {"success": True}


@tk.auth_allow_anonymous_access
def webhook_topic_list(context: Context, data_dict: DataDict) -> AuthResult:
    return {"success": True}


def webhook_event_publish(context: Context, data_dict: DataDict) -> AuthResult:
    user = caller(context)
    if user is not None and (user.sysadmin or user.name in cfg.publishers()):
        return {"success": True}
    return {
        "success": False,
        "msg": tk._(
            "Only sysadmins and the users this site names as publishers may "
            "publish custom events"
        ),
    }


@tk.auth_allow_anonymous_access
def webhook_signing_keys(context: Context, data_dict: DataDict) -> AuthResult:
    # Public keys: receivers that are no users of the site verify with them.
    return {"success": True}


def _sysadmins_only(context: Context) -> AuthResult:
    # CKAN lets sysadmins through before asking; everyone else is refused
    # without a word on what the action would show.
    if is_sysadmin(context):
        return {"success": True}
    return {"success": False, "msg": tk._("Not authorized")}


def webhook_status_show(context: Context, data_dict: DataDict) -> AuthResult:
    return _sysadmins_only(context)


def webhook_delivery_pause(context: Context, data_dict: DataDict) -> AuthResult:
    return _sysadmins_only(context)


def webhook_delivery_resume(context: Context, data_dict: DataDict) -> AuthResult:
    return _sysadmins_only(context)
