"""The webhook_* actions.

Each action checks access, validates against its schema (``logic/schema.py``;
``context["schema"]`` overrides it), writes, commits unless
``context["defer_commit"]``, and returns plain JSON-able data. Who may do
what is decided in ``logic/auth.py``; limits in ``logic/limits.py``; how a
webhook looks from outside in ``logic/dictization.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.lib.navl.dictization_functions import DataError
from ckan.types import Context, DataDict, Schema

from ckanext.webhooks import config as cfg
from ckanext.webhooks import control, delivery, events, feed, leases, status, topics
from ckanext.webhooks.delivery import consent, outbox
from ckanext.webhooks.http import receiver_host
from ckanext.webhooks.logic import auth, delivery_log, limits, schema
from ckanext.webhooks.logic.dictization import webhook_dictize
from ckanext.webhooks.logic.validators import shape_problems
from ckanext.webhooks.model import (
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    make_secret,
    utcnow,
)
from ckanext.webhooks.vocabulary import (
    EVENT_PREFIX,
    OWNER_REASON,
    SYSADMIN_REASON,
    UNVERIFIED_REASON,
    DeliveryStatus,
    PayloadFormat,
    PayloadKind,
    isoformat,
)

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


def _validated(
    context: Context, data_dict: DataDict, default_schema: Callable[[], Schema]
) -> dict[str, Any]:
    """``data_dict`` validated the CKAN way, or a ValidationError naming fields."""
    schema_ = context.get("schema") or default_schema()
    problems = shape_problems(data_dict, schema_)
    if problems:
        raise tk.ValidationError(problems)
    try:
        data, errors = tk.navl_validate(data_dict, schema_, context)
    except DataError as error:  # what shape_problems does not foresee: a 400
        raise tk.ValidationError(
            {"input": [tk._("Malformed input: {reason}").format(reason=error.error)]}
        ) from None
    if errors:
        raise tk.ValidationError(errors)
    return data


def _commit(context: Context) -> None:
    if not context.get("defer_commit"):
        model.Session.commit()


def _webhook(context: Context, webhook_id: str) -> Webhook:
    """The webhook the caller names; missing if they may not control it."""
    if context.get("ignore_auth"):
        found = model.Session.get(Webhook, webhook_id)
        if found is None:
            raise tk.ObjectNotFound(tk._("Webhook not found"))
        return found
    return auth.controlled_webhook(context, webhook_id)


def webhook_create(context: Context, data_dict: DataDict) -> str:
    """Subscribe ``address`` to ``topic``; returns the new webhook's id.

    :param topic: one of ``webhook_topic_list``, e.g. ``dataset/create``, or
        a list of them (at most 20; ``webhook_show`` gives the first as
        ``topic`` and all of them as ``topics``)
    :param address: the http(s) URL that receives the POSTs
    :param dataset: only events of this dataset (id or name), optional
    :param organization: only events of this organization's datasets, optional
    :param group: only datasets in this group (id or name), or in any of a
        list of groups, optional
    :param tag: only datasets with this tag (or any of a list), optional
    :param res_format: only datasets with a resource of this format, such as
        ``CSV`` (or any of a list; for resource events, the resource's own
        format), optional
    :param license_id: only datasets under this licence (or any of a list),
        optional
    :param rate_limit: at most this many deliveries per minute, optional
    :param payload: ``full`` (default: the entity as the owner may see it) or
        ``thin`` (its identity and the API URL to fetch it)
    :param format: ``standard`` (default) or ``cloudevents`` (CloudEvents 1.0
        structured JSON)
    :param headers: extra request headers for the receiver's gateway, an
        object of names to values (``Authorization``, say); their values are
        never shown again, ``webhook_show`` lists the names

    All given filters must match, as the dataset was before the change or
    as it is after it; deliveries say which (``filter``: ``matched``,
    ``entered`` or ``left``).

    Where ``ckanext.webhooks.verification`` requires it, nothing is sent
    until the receiver consents: a worker asks it at once
    (``webhook_show`` gives ``verification``; ``webhook_verify`` asks now).
    """
    tk.check_access("webhook_create", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_create_schema)
    _check_reachable(data["topic"], data.get("dataset"), data.get("organization"))
    user = auth.caller(context)
    now = utcnow()
    _check_filters_can_fire(data["topic"], data)
    webhook = Webhook(
        topic=data["topic"][0],
        topics=data["topic"],
        package_id=data.get("dataset"),
        organization_id=data.get("organization"),
        **{column: data.get(field) for field, column in FILTER_COLUMNS.items()},
        owner_id=user.id if user else None,
        rate_limit=data.get("rate_limit"),
        payload=data.get("payload", PayloadKind.FULL.value),
        format=data.get("format", PayloadFormat.STANDARD.value),
        headers=data.get("headers"),
        active=True,
        failure_count=0,
        created=now,
        renewed=now,
    )
    webhook.point_at(data["address"])
    limits.check_webhook_limits(context, webhook.receiver_host, exclude=None)
    model.Session.add(webhook)
    if consent.required(webhook):
        events.wake_workers_after_commit()  # for the handshake
    _commit(context)
    return webhook.id


@tk.side_effect_free
def webhook_show(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """The webhook ``id``, with its signing secret."""
    tk.check_access("webhook_show", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_id_schema)
    return webhook_dictize(_webhook(context, data["id"]), with_secret=True)


def webhook_update(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Change ``address``, ``topic``, ``dataset``, ``organization``,
    ``group``, ``tag``, ``res_format``, ``license_id``, ``rate_limit``
    (empty: none), ``payload``, ``format``, ``headers`` or ``active``.

    ``headers`` replaces every extra header at once (an empty object or
    string removes them); left out, they stay as they are.

    Setting ``active`` to true re-enables a disabled webhook and resets its
    failure count (an anonymous webhook whose receiver answered 410 Gone only
    by a sysadmin). A new address must be verified again where verification
    is required. The result carries no secret: ``webhook_show`` has it.
    """
    tk.check_access("webhook_update", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_update_schema)
    webhook = _webhook(context, data["id"])
    # Every check before any change: a refused update leaves nothing behind.
    _check_reachable(
        data.get("topic", webhook.topics),
        data.get("dataset", webhook.package_id),
        data.get("organization", webhook.organization_id),
    )
    moving = "address" in data and data["address"] != webhook.address
    if moving and webhook.owner_id is None:
        limits.check_webhook_limits(
            context, receiver_host(data["address"]), exclude=webhook.id
        )
    switching = "active" in data and data["active"] != webhook.active
    if switching and data["active"]:
        _check_not_gone(context, webhook, "active")
    _check_filters_can_fire(
        data.get("topic", webhook.topics),
        {
            field: data[field] if field in data else getattr(webhook, column)
            for field, column in FILTER_COLUMNS.items()
        },
    )
    if "topic" in data:
        webhook.topic, webhook.topics = data["topic"][0], data["topic"]
    for field, column in (
        ("dataset", "package_id"),
        ("organization", "organization_id"),
        ("rate_limit", "rate_limit"),
        *FILTER_COLUMNS.items(),
        ("payload", "payload"),
        ("format", "format"),
        ("headers", "headers"),
    ):
        if field in data:
            setattr(webhook, column, data[field])
    if moving:
        webhook.point_at(data["address"])
    if switching:
        _set_active(webhook, data["active"])
        if not webhook.active and not _owns(context, webhook):
            webhook.disabled_reason = SYSADMIN_REASON
    if (moving or switching) and webhook.active and consent.required(webhook):
        events.wake_workers_after_commit()  # for the handshake
    _commit(context)
    return webhook_dictize(webhook)


# The open-data filters: the action's field and the webhook's column.
FILTER_COLUMNS = {
    "group": "filter_groups",
    "tag": "filter_tags",
    "res_format": "filter_formats",
    "license_id": "filter_licenses",
}


def _check_filters_can_fire(subscribed: list[str], data: dict[str, Any]) -> None:
    """Filters look at datasets: refuse them on a topic without datasets."""
    for topic in subscribed:
        _check_topic_has_datasets(topic, data)


def _check_topic_has_datasets(topic: str, data: dict[str, Any]) -> None:
    kind = topic.split("/", 1)[0]
    if kind in ("dataset", "resource", "*"):
        return
    errors = {
        field: [
            tk._(
                "Filters by group, tag, format and licence apply to dataset "
                "and resource events; topic '{topic}' has none, so this "
                "webhook would never fire"
            ).format(topic=topic)
        ]
        for field in FILTER_COLUMNS
        if data.get(field)
    }
    if errors:
        raise tk.ValidationError(errors)


def _check_reachable(
    subscribed: list[str], dataset: str | None, organization: str | None
) -> None:
    """Refuse a subscription with a topic that could never receive anything."""
    for topic in subscribed:
        reason = topics.unreachable_by_filter(topic, dataset, organization)
        if reason:
            message = tk._("Topic '{topic}' could never fire: {reason}")
            raise tk.ValidationError(
                {"topic": [message.format(topic=topic, reason=tk._(reason))]}
            )


def _check_not_gone(context: Context, webhook: Webhook, field: str) -> None:
    if not (context.get("ignore_auth") or auth.may_undo_gone(context, webhook)):
        raise tk.ValidationError(
            {
                field: [
                    tk._(
                        "The receiver answered 410 Gone: it asked to receive "
                        "nothing more from this webhook. Log in to subscribe it "
                        "with a webhook of your own."
                    )
                ]
            }
        )


def _set_active(webhook: Webhook, active: bool) -> None:
    webhook.active = active
    if active:
        if webhook.disabled_reason == UNVERIFIED_REASON:
            webhook.point_at(webhook.address)  # a new time to consent
        webhook.failure_count = 0
        webhook.disabled_at = None
        webhook.disabled_reason = None
    else:
        webhook.disabled_at = utcnow()
        webhook.disabled_reason = OWNER_REASON


def _owns(context: Context, webhook: Webhook) -> bool:
    """Whether the caller switches the webhook off as its owner rather than
    as a sysadmin (for an anonymous webhook: anyone but a sysadmin)."""
    user = auth.caller(context)
    if user is None or not user.sysadmin:
        return True
    return user.id == webhook.owner_id


def webhook_delete(context: Context, data_dict: DataDict) -> None:
    """Delete the webhook ``id`` with its delivery log."""
    tk.check_access("webhook_delete", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_id_schema)
    model.Session.delete(_webhook(context, data["id"]))
    _commit(context)


@tk.side_effect_free
def webhook_list(context: Context, data_dict: DataDict) -> list[dict[str, Any]]:
    """The caller's webhooks, newest first (a sysadmin sees everyone's).

    :param q: only those whose address contains this text (any case)
    :param active: only the enabled (true) or disabled (false) ones

    No secrets: ``webhook_show`` gives one webhook's secret.
    """
    tk.check_access("webhook_list", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_list_search_schema)
    query = model.Session.query(Webhook)
    if not (auth.is_sysadmin(context) or context.get("ignore_auth")):
        user = auth.caller(context)
        query = query.filter(Webhook.owner_id == (user.id if user else None))
    if data.get("q"):
        query = query.filter(Webhook.address.ilike(_containing(data["q"]), escape="\\"))
    if "active" in data:
        query = query.filter(Webhook.active == data["active"])
    query = query.order_by(Webhook.created.desc(), Webhook.id)
    query = query.offset(data.get("offset", 0)).limit(data.get("limit", 100))
    return [webhook_dictize(w) for w in query]


def _containing(text: str) -> str:
    """A LIKE pattern for ``text`` anywhere, its own ``%`` and ``_`` literal."""
    for special in ("\\", "%", "_"):
        text = text.replace(special, "\\" + special)
    return f"%{text}%"


@tk.side_effect_free
def webhook_topic_list(context: Context, data_dict: DataDict) -> list[str]:
    """The topics a webhook can subscribe to."""
    tk.check_access("webhook_topic_list", context, data_dict)
    return topics.subscribable_topics()


@tk.side_effect_free
def webhook_delivery_list(
    context: Context, data_dict: DataDict
) -> list[dict[str, Any]]:
    """The delivery log of webhook ``id``, newest first.

    :param limit: at most this many entries (default 100)
    :param offset: skip this many
    :param outcome: only attempts with this outcome (``success``,
        ``retry scheduled``, ``given up``, ``gone``, ``failed``); grouped by
        event, only events whose latest attempt had it
    :param by_event: if true, one entry per event, the one attempted last
        first, each with its ``attempts``; ``limit`` and ``offset`` count
        events

    Each attempt carries ``outcome_text`` (in plain words),
    ``next_attempt_at`` (when a scheduled retry is due), ``request`` (the
    ``headers`` and ``body`` as sent; the signature and headers the site did
    not write itself are withheld, the body capped by
    ``ckanext.webhooks.max_logged_request_bytes``) and ``response_headers``
    (capped like ``response``).
    """
    tk.check_access("webhook_delivery_list", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_delivery_list_schema)
    webhook = _webhook(context, data["id"])
    page = (
        delivery_log.event_page if data.get("by_event") else delivery_log.attempt_page
    )
    return page(
        webhook.id, data.get("outcome"), data.get("offset", 0), data.get("limit", 100)
    )


def _deliveries_named_by(target: str) -> list[WebhookDelivery]:
    """The deliveries of an event id, or the one of a delivery-log entry id."""
    query = model.Session.query(WebhookDelivery)
    if target.startswith(EVENT_PREFIX):
        return query.filter(WebhookDelivery.event_id == target).all()
    if target.isascii() and target.isdigit() and len(target) < 19:
        attempt = model.Session.get(WebhookAttempt, int(target))
        if attempt is not None:
            return query.filter(WebhookDelivery.id == attempt.delivery_id).all()
    return []


def webhook_redeliver(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Send an event again, with the same ``webhook-id``.

    :param id: a delivery log entry id (from ``webhook_delivery_list``) or an
        event id (``evt_...``)
    :param webhook_id: only this webhook's delivery. Anonymous webhooks are
        reached only this way: holding an event or log id proves nothing
        about who controls the webhooks that got it. Without it, a user
        reaches their own webhooks and a sysadmin everyone's.
    """
    tk.check_access("webhook_redeliver", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_redeliver_schema)
    deliveries = _deliveries_named_by(data["id"])
    if data.get("webhook_id"):
        named = _webhook(context, data["webhook_id"])
        deliveries = [d for d in deliveries if d.webhook_id == named.id]
    elif not context.get("ignore_auth"):
        deliveries = [
            d
            for d in deliveries
            if auth.may_act_unnamed(context, model.Session.get(Webhook, d.webhook_id))
        ]
    if not deliveries:
        raise tk.ObjectNotFound(
            tk._("No delivery found for '{id}'").format(id=data["id"][:100])
        )
    limits.check_send_allowance(context, sorted({d.webhook_id for d in deliveries}))
    now = utcnow()
    for item in deliveries:
        item.status = DeliveryStatus.PENDING.value
        item.next_attempt_at = now
        item.lease_until = None
        item.updated = now
    events.wake_workers_after_commit()
    _commit(context)
    return {
        "event_id": deliveries[0].event_id,
        "webhooks": sorted(item.webhook_id for item in deliveries),
        "queued": len(deliveries),
    }


@tk.side_effect_free
def webhook_event_list(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """The events the caller may see, oldest first: ``{"items", "next", "more"}``.

    :param since: where to start: the ``next`` of the previous page, an ISO
        8601 time (events after it) or an event id (events after it);
        default: the oldest event kept (``delivery_log_days``)
    :param limit: at most this many items (default and most:
        ``ckanext.webhooks.feed_max_limit``, 100)
    :param topic: a topic as subscriptions name them (``dataset/update``,
        ``dataset/*``, ``*``)
    :param dataset: only events of this dataset (id or name)
    :param organization: only events of this organization's datasets

    Each item is the body a delivery of the event would carry to a webhook
    of the caller, without ``webhook_id`` and ``sequence``. A page may hold
    fewer items than ``limit`` (events the caller may not see are passed
    over, a bounded number per call); keep paging with ``next`` while
    ``more`` is true, then poll with the last ``next`` now and then.
    """
    tk.check_access("webhook_event_list", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_event_list_schema)
    user = auth.caller(context)
    try:
        page = feed.read(
            user.id if user else None,
            data.get("since"),
            data.get("limit", 100),
            topic=data.get("topic"),
            dataset=data.get("dataset"),
            organization=data.get("organization"),
        )
    except feed.BadCursor:
        raise _bad_since("since") from None
    return {"items": page.items, "next": page.next, "more": page.more}


def _bad_since(field: str) -> tk.ValidationError:
    return tk.ValidationError(
        {
            field: [
                tk._(
                    "Give the next cursor of a page, an ISO 8601 time "
                    "(2026-11-23T10:00:00Z) or an event id (evt_...) that is "
                    "still kept"
                )
            ]
        }
    )


MAX_RECOVER = 1000  # events one webhook_recover call looks at (its cost)


def webhook_recover(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Queue again, for webhook ``id``, every event since ``since`` (and up to
    ``until``) that matches it and that it has not received; returns
    ``{"queued", "complete", "next"}``.

    :param since: an ISO 8601 time, an event id or a feed cursor
    :param until: optional, the same kinds; default: now

    Events it missed while disabled, unverified or giving up, and events
    from before it existed, go once more with their original ``webhook-id``,
    in order; delivered ones do not go twice. Who may see each is decided at
    sending, as always. At most 1,000 events are looked at per call: when
    ``complete`` is false, call again with ``since`` set to ``next``.
    """
    tk.check_access("webhook_recover", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_recover_schema)
    webhook = _webhook(context, data["id"])
    if not webhook.active:
        raise tk.ValidationError(
            {"id": [tk._("The webhook is disabled: enable it, then recover")]}
        )
    limits.check_send_allowance(context, [webhook.id])
    try:
        after = feed.position_of(data["since"])
    except feed.BadCursor:
        raise _bad_since("since") from None
    upto = feed.END
    if data.get("until"):
        try:
            upto = feed.position_of(data["until"])
        except feed.BadCursor:
            raise _bad_since("until") from None
    queued, reached = outbox.recover(webhook.id, after, upto, MAX_RECOVER)
    if queued:
        events.wake_workers_after_commit()
    _commit(context)
    complete = reached >= upto
    return {
        "queued": queued,
        "complete": complete,
        "next": None if complete else feed.seal(reached),
    }


def webhook_test(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Send a ``webhook/ping`` event to webhook ``id`` now; return the outcome.

    Bounded by ``ckanext.webhooks.timeout`` like every delivery, and by
    ``ckanext.webhooks.max_tests_per_minute`` per webhook and per caller.
    The attempt is recorded in the delivery log (committed unless
    ``defer_commit``).
    """
    tk.check_access("webhook_test", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_id_schema)
    webhook = _webhook(context, data["id"])
    _check_not_gone(context, webhook, "id")
    if consent.required(webhook) and webhook.verified_at is None:
        raise tk.ValidationError(
            {
                "id": [
                    tk._(
                        "The receiver has not consented to deliveries yet: "
                        "nothing is sent to it until it does (webhook_verify "
                        "asks it now)"
                    )
                ]
            }
        )
    if control.paused():
        raise tk.ValidationError(
            {
                "id": [
                    tk._(
                        "Delivery is paused by a sysadmin: no test ping is sent "
                        "until delivery is resumed"
                    )
                ]
            }
        )
    limits.check_send_allowance(context, [webhook.id])
    event_id, outcome = delivery.ping(webhook, commit=not context.get("defer_commit"))
    return {
        "success": outcome.ok,
        "status_code": outcome.status,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
        "event_id": event_id,
    }


def webhook_verify(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Ask the receiver of webhook ``id`` for its consent now; return the outcome.

    The CloudEvents abuse-protection handshake: an ``OPTIONS`` request that
    the receiver grants with ``WebHook-Allowed-Origin`` (and may limit with
    ``WebHook-Allowed-Rate``), or later through the callback URL it is
    given. Bounded by ``ckanext.webhooks.timeout``, and counted with
    ``webhook_test`` in ``ckanext.webhooks.max_tests_per_minute``.
    """
    tk.check_access("webhook_verify", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_id_schema)
    webhook = _webhook(context, data["id"])
    _check_not_gone(context, webhook, "id")
    limits.check_send_allowance(context, [webhook.id])
    answer = consent.handshake_now(webhook)
    if answer.granted:
        events.wake_workers_after_commit()  # deliveries held for it can go
    _commit(context)
    return {
        "verified": webhook.verified_at is not None,
        "verified_at": webhook_dictize(webhook)["verified_at"],
        "allowed_rate": webhook.allowed_rate,
        "status_code": answer.status,
        "error": answer.reason,
        "waiting_for_callback": answer.waiting,
    }


def webhook_consent(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """A receiver's consent given through its callback URL
    (``WebHook-Request-Callback``; the URL calls this action).

    :param id: the webhook's id, as in the callback URL
    :param token: the token of the callback URL
    :param allowed_rate: optional, the receiver's ceiling in deliveries per
        minute (its ``WebHook-Allowed-Rate``), or ``*``

    Anything but the right token of a verification under way is reported as
    not found.
    """
    tk.check_access("webhook_consent", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_consent_schema)
    if not consent.accept_callback(data["id"], data["token"], data.get("allowed_rate")):
        model.Session.rollback()
        raise tk.ObjectNotFound(tk._("Not found"))
    events.wake_workers_after_commit()  # deliveries held for it can go
    _commit(context)
    return {"verified": True}


def webhook_renew(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Renew the lease of the anonymous webhook ``id``
    (``ckanext.webhooks.anonymous_lease_days``); returns the webhook, whose
    ``expires`` says until when. A webhook disabled because its lease ran
    out is enabled again. Webhooks with an owner never expire.
    """
    tk.check_access("webhook_renew", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_id_schema)
    webhook = _webhook(context, data["id"])
    leases.renew(webhook, utcnow())
    _commit(context)
    return webhook_dictize(webhook)


def webhook_rotate_secret(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Issue a new signing secret for webhook ``id``; returns it with the webhook.

    For ``ckanext.webhooks.secret_rotation_hours`` deliveries are signed with
    both the old and the new secret, so receivers can switch without loss.
    """
    tk.check_access("webhook_rotate_secret", context, data_dict)
    data = _validated(context, data_dict, schema.webhook_id_schema)
    webhook = _webhook(context, data["id"])
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_expires = utcnow() + datetime.timedelta(
        hours=cfg.secret_rotation_hours()
    )
    webhook.secret = make_secret()
    _commit(context)
    return webhook_dictize(webhook, with_secret=True)


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
    data = _validated(context, data_dict, schema.webhook_event_publish_schema)
    event_id, wanted = events.publish(
        data["topic"],
        data["data"],
        dataset=data.get("dataset"),
        organization=data.get("organization"),
    )
    _commit(context)
    return {"id": event_id, "topic": data["topic"], "queued": wanted}


@tk.side_effect_free
def webhook_signing_keys(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """The site's public keys, which verify the ``v1a`` signature of every
    delivery: ``{"keys": [{"id", "public_key", "algorithm", "signature"}]}``.

    Anyone may call it, over GET, whatever ``minimum_auth`` says: public keys
    prove nothing and open nothing. Empty unless
    ``ckanext.webhooks.signing_keys`` is set. Also served as
    ``/.well-known/webhooks/keys.json``.
    """
    tk.check_access("webhook_signing_keys", context, data_dict)
    _validated(context, data_dict, schema.webhook_no_parameters_schema)
    return {"keys": [key.published() for key in cfg.signing_keys()]}


def webhook_status_show(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Sysadmins: the delivery figures of the operator's page (``status.py``):
    backlog, oldest waiting age, the last hour per minute, success rate,
    failing and disabled webhooks, busiest hosts, the pause and the last time
    a worker took a job."""
    tk.check_access("webhook_status_show", context, data_dict)
    _validated(context, data_dict, schema.webhook_no_parameters_schema)
    return status.delivery_status()


def webhook_delivery_pause(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Sysadmins: pause all delivery. Events are still captured and expanded;
    deliveries wait, unsent and not lost, until ``webhook_delivery_resume``."""
    tk.check_access("webhook_delivery_pause", context, data_dict)
    _validated(context, data_dict, schema.webhook_no_parameters_schema)
    user = auth.caller(context)
    control.pause(user.name if user else None)
    _commit(context)
    return _pause_state()


def webhook_delivery_resume(context: Context, data_dict: DataDict) -> dict[str, Any]:
    """Sysadmins: resume delivery; a worker is woken for what waited."""
    tk.check_access("webhook_delivery_resume", context, data_dict)
    _validated(context, data_dict, schema.webhook_no_parameters_schema)
    control.resume()
    events.wake_workers_after_commit()
    _commit(context)
    return _pause_state()


def _pause_state() -> dict[str, Any]:
    paused = control.paused()
    return {
        "paused": paused is not None,
        "paused_by": paused["by"] if paused else None,
        "paused_since": isoformat(paused["since"]) if paused else None,
    }
