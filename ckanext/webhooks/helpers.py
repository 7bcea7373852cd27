"""Template helpers for the web interface (``h.webhooks_*``)."""

from __future__ import annotations

import datetime
from types import ModuleType

import ckan.model as model
from markupsafe import Markup, escape

from ckanext.webhooks import vocabulary

__all__ = [
    "webhooks_address_label",
    "webhooks_dataset_label",
    "webhooks_field_attrs",
    "webhooks_group_labels",
    "webhooks_organization_label",
    "webhooks_owner_label",
    "webhooks_status_class",
    "webhooks_time",
    "webhooks_vocabulary",
]


def webhooks_address_label(address: str) -> str:
    """A webhook's name on these pages: its address, shortened if long."""
    return address if len(address) <= 100 else address[:99] + "…"


def webhooks_field_attrs(
    field_id: str, error: object, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """A form control's attributes: described by its help text, and when in
    error marked invalid and described by its message first."""
    attrs = {"class": "form-control", "aria-describedby": f"{field_id}-help"}
    if error:
        attrs["aria-invalid"] = "true"
        attrs["aria-describedby"] = f"{field_id}-error {field_id}-help"
    attrs.update(extra or {})
    return attrs


def webhooks_dataset_label(package_id: str | None) -> str:
    """A filter's dataset by name; the stored id if it is gone."""
    if not package_id:
        return ""
    pkg = model.Package.get(package_id)
    return pkg.name if pkg is not None else package_id


def webhooks_organization_label(organization_id: str | None) -> str:
    if not organization_id:
        return ""
    group = model.Group.get(organization_id)
    return group.name if group is not None else organization_id


def webhooks_group_labels(group_ids: list[str] | None) -> list[str]:
    """The names of a webhook's group filter, for display."""
    return [webhooks_organization_label(group_id) for group_id in group_ids or ()]


def webhooks_owner_label(user_id: str | None) -> str:
    """Who owns a webhook, for sysadmins looking at everyone's."""
    if not user_id:
        return "(anonymous)"
    user = model.User.get(user_id)
    return user.name if user is not None else user_id


def webhooks_status_class(status: str | int | None) -> str:
    """A Bootstrap colour for a delivery status: 2xx green, else red."""
    if status is None or status == "":
        return "secondary"
    text = str(status)
    if text.isdigit() and 200 <= int(text) < 300:
        return "success"
    return "danger"


def webhooks_vocabulary() -> ModuleType:
    """Topics, statuses and outcomes for templates, never retyped there."""
    return vocabulary


def webhooks_time(moment: str | None) -> Markup | str:
    """The one way these pages show a time (an API time, ISO 8601 with
    ``Z``): ``2026-11-24 02:15:27 UTC``, in a ``<time>`` element."""
    if not moment:
        return ""
    when = datetime.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    shown = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}">{}</time>').format(escape(moment), shown)
