"""How much one caller may make CKAN do: webhook counts and sends on demand.

Counts are checked under a transaction-scoped advisory lock, so creates in
parallel queue behind each other instead of slipping past the count.
Anonymous webhooks are counted per receiver host (``Webhook.receiver_host``),
whoever created them: that is what stops strangers pointing a flood of
webhooks at one third party. Test pings and redeliveries are counted per
minute in Redis, shared by every web process.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from ckan.types import Context
from sqlalchemy import func, text

from ckanext.webhooks import config as cfg
from ckanext.webhooks.logic.auth import caller
from ckanext.webhooks.model import Webhook
from ckanext.webhooks.vocabulary import GONE_REASON

__all__ = ["check_send_allowance", "check_webhook_limits"]

log = logging.getLogger(__name__)


def _lock_for_counting(key: str) -> None:
    """Hold an advisory lock on ``key`` until this transaction ends."""
    model.Session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"ckanext-webhooks:{key}"},
    )


def _refuse(field: str, message: str) -> None:
    raise tk.ValidationError({field: [message]})


def check_webhook_limits(context: Context, host: str, exclude: str | None) -> None:
    """Raise ValidationError if one more webhook (to ``host``) is over a limit.

    ``exclude`` is the webhook being updated, which does not count twice.
    """
    user = caller(context)
    if user is not None and user.sysadmin:
        return
    if user is not None:
        if exclude is None:
            _check_per_user(user)
        return
    _check_receiver_not_gone(host)
    limit = cfg.max_webhooks_per_address()
    if not limit:
        return
    same = [Webhook.receiver_host == host, Webhook.owner_id.is_(None)]
    if exclude is not None:
        same.append(Webhook.id != exclude)
    _refuse_when_full(
        f"host:{host}",
        same,
        limit,
        "address",
        tk._(
            "There are already {n} anonymous webhooks for this receiver, "
            "the most allowed. Log in to add more."
        ),
    )


def _check_receiver_not_gone(host: str) -> None:
    """A receiver host that answered 410 Gone to an anonymous webhook gets no
    new anonymous ones while that webhook is kept (``prune`` deletes it after
    ``delete_disabled_after_days``): a stranger cannot just subscribe it again."""
    gone = (
        model.Session.query(Webhook.id)
        .filter(
            Webhook.receiver_host == host,
            Webhook.owner_id.is_(None),
            Webhook.disabled_reason == GONE_REASON,
        )
        .first()
    )
    if gone is not None:
        _refuse(
            "address",
            tk._(
                "This receiver answered 410 Gone: it asked to receive nothing "
                "more from anonymous webhooks. Log in to subscribe it."
            ),
        )


def _check_per_user(user: model.User) -> None:
    limit = cfg.max_webhooks_per_user()
    if limit:
        _refuse_when_full(
            f"user:{user.id}",
            [Webhook.owner_id == user.id],
            limit,
            "owner",
            tk._(
                "You already have {n} webhooks, the most allowed on this site. "
                "Delete one first."
            ),
        )


def _refuse_when_full(
    lock: str, criteria: list[Any], limit: int, field: str, message: str
) -> None:
    """Count the webhooks meeting ``criteria`` under the advisory lock ``lock``;
    refuse on ``field`` with ``message`` (``{n}``: the limit) at ``limit``."""
    _lock_for_counting(lock)
    found = model.Session.query(func.count(Webhook.id)).filter(*criteria).scalar()
    if found >= limit:
        _refuse(field, message.format(n=limit))


def _caller_key(context: Context) -> str:
    user = caller(context)
    if user is not None:
        return f"user:{user.id}"
    from flask import has_request_context

    address = tk.request.remote_addr if has_request_context() else None
    return f"address:{_network_of(address) if address else 'unknown'}"


def _network_of(address: str) -> str:
    """One IPv6 /64 is one caller: a single host is usually handed a whole
    /64, and could otherwise be a new caller at every request."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def check_send_allowance(context: Context, webhook_ids: list[str]) -> None:
    """Count sends on demand (test pings, redeliveries) for each webhook and
    for the caller; refuse past ``max_tests_per_minute`` of either, with a
    ValidationError on ``id`` (a webhook's) or ``caller``.

    Without it, anyone holding an anonymous webhook could have CKAN POST at
    its receiver as often as they call.
    """
    limit = cfg.max_tests_per_minute()
    if not limit or context.get("ignore_auth"):
        return
    from ckan.lib.redis import connect_to_redis

    minute = int(time.time() // 60)
    prefix = f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:sends"
    keys = [f"{prefix}:caller:{_caller_key(context)}:{minute}"]
    keys += [f"{prefix}:webhook:{hook_id}:{minute}" for hook_id in webhook_ids]
    try:
        pipe = connect_to_redis().pipeline()
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, 120)
        counts = pipe.execute()[::2]
    except Exception as error:  # the send still goes under the deadline
        log.warning("webhooks: sends on demand not counted (%s)", error)
        return
    if counts[0] > limit:
        who = tk._("you")
        field = "caller"
    elif any(count > limit for count in counts[1:]):
        who = tk._("this webhook")
        field = "id"
    else:
        return
    _refuse(
        field,
        tk._(
            "Too many test pings or redeliveries: at most {n} a minute for {who}. "
            "Try again in a minute."
        ).format(n=limit, who=who),
    )
