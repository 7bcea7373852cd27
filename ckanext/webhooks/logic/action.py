"""The webhook_* actions."""

from __future__ import annotations

import datetime
import json
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.lib.navl.dictization_functions import DataError
from ckan.types import Context, DataDict
from sqlalchemy import func, text

from ckanext.webhooks import config as cfg
from ckanext.webhooks import delivery, events, topics
from ckanext.webhooks.logic import schema
from ckanext.webhooks.model import (
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    make_secret,
    utcnow,
)

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


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def webhook_dictize(webhook: Webhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "topic": webhook.topic,
        "address": webhook.address,
        "dataset": webhook.package_id,
        "organization": webhook.organization_id,
        "owner_id": webhook.owner_id,
        "created": _iso(webhook.created),
        "secret": webhook.secret,
        "previous_secret_expires": _iso(webhook.previous_secret_expires),
        "active": webhook.active,
        "disabled_reason": webhook.disabled_reason,
        "disabled_at": _iso(webhook.disabled_at),
        "failure_count": webhook.failure_count,
        "last_delivery_at": _iso(webhook.last_delivery_at),
        "last_delivery_status": webhook.last_delivery_status,
    }


def _validate(
    context: Context, data_dict: DataDict, default_schema: dict[str, Any]
) -> dict[str, Any]:
    schema_ = context.get("schema") or default_schema
    unknown = sorted(k for k in data_dict if k not in schema_ and k != "__extras")
    if unknown:
        raise tk.ValidationError(
            {
                key[:100]: [
                    tk._("Unknown field. Allowed fields: {fields}").format(
                        fields=", ".join(sorted(schema_))
                    )
                ]
                for key in unknown
            }
        )
    try:
        data, errors = tk.navl_validate(data_dict, schema_, context)
    except DataError as error:  # e.g. a list of plain values: a 400, not a 500
        raise tk.ValidationError(
            {"input": [tk._("Malformed input: {reason}").format(reason=error.error)]}
        ) from None
    if errors:
        raise tk.ValidationError(errors)
    return data


def _commit(context: Context) -> None:
    if not context.get("defer_commit"):
        model.Session.commit()


def _get(webhook_id: Any) -> Webhook:
    webhook = (
        model.Session.get(Webhook, webhook_id) if isinstance(webhook_id, str) else None
    )
    if webhook is None:
        raise tk.ObjectNotFound(tk._("Webhook not found"))
    return webhook


def _caller(context: Context) -> model.User | None:
    name = context.get("user")
    return model.User.get(name) if name else None


def _serialize(key: str) -> None:
    """Hold a transaction-scoped lock on ``key``: concurrent creates queue here,
    so a limit checked by counting cannot be passed by creating in parallel."""
    model.Session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"ckanext-webhooks:{key}"},
    )


def _check_limits(user: model.User | None, address: str) -> None:
    if user is not None and user.sysadmin:
        return
    if user is not None:
        limit = cfg.max_webhooks_per_user()
        if limit:
            _serialize(f"user:{user.id}")
        owned = model.Session.query(func.count(Webhook.id)).filter(
            Webhook.owner_id == user.id
        )
        if limit and owned.scalar() >= limit:
            raise tk.ValidationError(
                {
                    "owner": [
                        tk._(
                            "You already have {n} webhooks, the most allowed "
                            "on this site. Delete one first."
                        ).format(n=limit)
                    ]
                }
            )
    else:
        limit = cfg.max_webhooks_per_address()
        if limit:
            _serialize(f"address:{address}")
        same = model.Session.query(func.count(Webhook.id)).filter(
            Webhook.address == address, Webhook.owner_id.is_(None)
        )
        if limit and same.scalar() >= limit:
            raise tk.ValidationError(
                {
                    "address": [
                        tk._(
                            "There are already {n} anonymous webhooks for this "
                            "address, the most allowed. Log in to add more."
                        ).format(n=limit)
                    ]
                }
            )


def webhook_create(context: Context, data_dict: DataDict) -> str:
    """Subscribe ``address`` to ``topic``; returns the new webhook's id.

    :param topic: one of ``webhook_topic_list``, e.g. ``dataset/create``
    :param address: the http(s) URL that receives the POSTs
    :param dataset: only events of this dataset (id or name), optional
    :param organization: only events of this organization's datasets, optional
    """
    tk.check_access("webhook_create", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_create_schema())
    user = _caller(context)
    _check_limits(user, data["address"])
    webhook = Webhook(
        topic=data["topic"],
        address=data["address"],
        package_id=data.get("dataset"),
        organization_id=data.get("organization"),
        owner_id=user.id if user else None,
        active=True,
        failure_count=0,
        created=utcnow(),
    )
    model.Session.add(webhook)
    _commit(context)
    return webhook.id


@tk.side_effect_free
def webhook_show(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """The webhook ``id``, with its signing secret."""
    tk.check_access("webhook_show", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_id_schema())
    return webhook_dictize(_get(data["id"]))


def webhook_update(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Change ``address``, ``topic``, ``dataset``, ``organization`` or ``active``.

    Setting ``active`` to true re-enables a disabled webhook and resets its
    failure count.
    """
    tk.check_access("webhook_update", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_update_schema())
    webhook = _get(data["id"])
    for field, column in (
        ("topic", "topic"),
        ("address", "address"),
        ("dataset", "package_id"),
        ("organization", "organization_id"),
    ):
        if field in data:
            setattr(webhook, column, data[field])
    if "active" in data and data["active"] != webhook.active:
        webhook.active = data["active"]
        if webhook.active:
            webhook.failure_count = 0
            webhook.disabled_at = None
            webhook.disabled_reason = None
        else:
            webhook.disabled_at = utcnow()
            webhook.disabled_reason = "disabled by its owner"
    _commit(context)
    return webhook_dictize(webhook)


def webhook_delete(context: Context, data_dict: DataDict) -> None:
    """Delete the webhook ``id`` with its delivery log."""
    tk.check_access("webhook_delete", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_id_schema())
    model.Session.delete(_get(data["id"]))
    _commit(context)


@tk.side_effect_free
def webhook_list(context: Context, data_dict: DataDict) -> list[dict[str, Any]]:
    """The caller's webhooks, newest first (a sysadmin sees everyone's)."""
    tk.check_access("webhook_list", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_list_schema())
    user = _caller(context)
    query = model.Session.query(Webhook)
    if not (user and user.sysadmin):
        query = query.filter(Webhook.owner_id == (user.id if user else None))
    query = query.order_by(Webhook.created.desc(), Webhook.id)
    query = query.offset(data.get("offset", 0)).limit(data.get("limit", 100))
    return [webhook_dictize(w) for w in query]


@tk.side_effect_free
def webhook_topic_list(context: Context, data_dict: DataDict) -> list[str]:
    """The topics a webhook can subscribe to."""
    tk.check_access("webhook_topic_list", context, data_dict)
    return topics.subscribable_topics()


def attempt_dictize(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": str(attempt.id),
        "delivery_id": str(attempt.delivery_id),
        "event_id": attempt.event_id,
        "webhook_id": attempt.webhook_id,
        "topic": attempt.topic,
        "attempt": attempt.attempt,
        "created": _iso(attempt.created),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "latency_ms": attempt.latency_ms,
        "response": attempt.response,
        "outcome": attempt.outcome,
    }


@tk.side_effect_free
def webhook_delivery_list(
    context: Context, data_dict: DataDict
) -> list[dict[str, Any]]:
    """The delivery log of webhook ``id``, newest first.

    :param limit: at most this many entries (default 100)
    :param offset: skip this many
    """
    tk.check_access("webhook_delivery_list", context, data_dict)
    list_schema = {**schema.webhook_list_schema(), **schema.webhook_id_schema()}
    data = _validate(context, data_dict, list_schema)
    webhook = _get(data["id"])
    query = (
        model.Session.query(WebhookAttempt)
        .filter(WebhookAttempt.webhook_id == webhook.id)
        .order_by(WebhookAttempt.id.desc())
        .offset(data.get("offset", 0))
        .limit(data.get("limit", 100))
    )
    return [attempt_dictize(a) for a in query]


def webhook_redeliver(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Send an event again, with the same ``webhook-id``.

    :param id: a delivery log entry id (from ``webhook_delivery_list``) or an
        event id (``evt_...``: every webhook of the caller that got it)
    :param webhook_id: only this webhook's delivery. Needed with a log entry
        id of an anonymous webhook: log ids are sequential, so holding the
        webhook's id is what proves control of it.
    """
    tk.check_access("webhook_redeliver", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_redeliver_schema())
    target = data["id"]
    caller = _caller(context)
    query = model.Session.query(WebhookDelivery)
    if target.startswith("evt_"):
        deliveries = query.filter(WebhookDelivery.event_id == target).all()
    elif target.isdigit() and len(target) < 19:
        attempt = model.Session.get(WebhookAttempt, int(target))
        deliveries = (
            query.filter(WebhookDelivery.id == attempt.delivery_id).all()
            if attempt
            else []
        )
    else:
        deliveries = []
    if data.get("webhook_id"):
        deliveries = [d for d in deliveries if d.webhook_id == data["webhook_id"]]
    elif not target.startswith("evt_") and not (caller and caller.sysadmin):
        deliveries = [
            d
            for d in deliveries
            if model.Session.get(Webhook, d.webhook_id).owner_id is not None
        ]
    allowed = []
    for item in deliveries:
        try:
            tk.check_access("webhook_update", context, {"id": item.webhook_id})
            allowed.append(item)
        except tk.NotAuthorized:
            if not target.startswith("evt_"):
                raise
    if not allowed:
        raise tk.ObjectNotFound(tk._("No delivery found for '{id}'").format(id=target))
    now = utcnow()
    for item in allowed:
        item.status = "pending"
        item.next_attempt_at = now
        item.lease_until = None
        item.updated = now
    model.Session.commit()
    delivery.wake_workers()
    return {
        "event_id": allowed[0].event_id,
        "webhooks": sorted(item.webhook_id for item in allowed),
        "queued": len(allowed),
    }


def webhook_test(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Send a ``webhook/ping`` event to webhook ``id`` now; return the outcome."""
    tk.check_access("webhook_test", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_id_schema())
    webhook = _get(data["id"])
    now = utcnow()
    event = WebhookEvent(
        topic=topics.PING,
        entity_type="webhook",
        entity_id=webhook.id,
        private=True,
        snapshot=json.dumps({"id": webhook.id, "topic": webhook.topic}),
        created=now,
        expanded=True,
    )
    model.Session.add(event)
    model.Session.flush()
    item = WebhookDelivery(
        event_id=event.id,
        webhook_id=webhook.id,
        status="pending",
        attempts=1,
        next_attempt_at=None,
        created=now,
        updated=now,
    )
    model.Session.add(item)
    model.Session.commit()
    sender = delivery.Deliverer()
    try:
        claim = delivery.Claim(item.id, event, webhook, 1)
        prepared, _ = sender.prepare([claim])
        outcome = sender.send(prepared[0])
        sender.record([(claim, outcome)], [])
    finally:
        sender.close()
    return {
        "success": outcome.ok,
        "status_code": outcome.status,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "event_id": event.id,
    }


def webhook_rotate_secret(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Issue a new signing secret for webhook ``id``.

    For ``ckanext.webhooks.secret_rotation_hours`` deliveries are signed with
    both the old and the new secret, so receivers can switch without loss.
    """
    tk.check_access("webhook_rotate_secret", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_id_schema())
    webhook = _get(data["id"])
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_expires = utcnow() + datetime.timedelta(
        hours=cfg.secret_rotation_hours()
    )
    webhook.secret = make_secret()
    _commit(context)
    return webhook_dictize(webhook)


def webhook_event_publish(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Publish a custom event to every webhook subscribed to ``topic``.

    :param topic: ``custom/<name>`` or a topic declared by an IWebhooks plugin
    :param data: a JSON object, sent as the payload's ``entity``
    :param dataset: optional: the event concerns this dataset (id or name);
        only webhooks whose owner may read it receive it, and dataset filters
        apply
    :param organization: optional: organization filters apply
    """
    tk.check_access("webhook_event_publish", context, data_dict)
    data = _validate(context, data_dict, schema.webhook_event_publish_schema())
    event_id = events.publish(
        data["topic"],
        data["data"],
        dataset=data.get("dataset"),
        organization=data.get("organization"),
    )
    _commit(context)
    return {"id": event_id, "topic": data["topic"], "queued": event_id is not None}
