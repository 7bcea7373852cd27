"""Owners are told when their webhook is switched off for them.

A webhook is disabled by delivery (410 Gone, too many failures), by the
consent rules (the receiver did not consent in time) or by a sysadmin. Its
owner, if it has one, gets one email per digest: every webhook of theirs
disabled since the last email, why, and how to switch it on again. Nothing
is recorded at the places that disable a webhook: a disabled webhook whose
``owner_notified_at`` is empty, or older than ``disabled_at``, is the
record, so no way of disabling can forget to tell, and a webhook enabled and
disabled again is told about again. Anonymous webhooks have nobody to mail;
a webhook its owner switched off needs no notice.

Digests go out from ``ckan webhooks dispatch`` (and ``notify-owners``), at
most one per owner per ``ckanext.webhooks.owner_notice_minutes``. The rows
of one owner are locked while their mail is sent, so two dispatchers never
mail twice; a mail that fails is tried again at the next run.
"""

from __future__ import annotations

import datetime
import logging

import ckan.model as model
import ckan.plugins.toolkit as tk
from sqlalchemy import text

from ckanext.webhooks import config as cfg
from ckanext.webhooks.model import Webhook, utcnow
from ckanext.webhooks.vocabulary import (
    GONE_REASON,
    LEASE_REASON,
    OWNER_REASON,
    UNVERIFIED_REASON,
)

__all__ = ["notify_owners", "unnoticed_sql"]

log = logging.getLogger(__name__)

MAX_OWNERS_PER_RUN = 100  # one run sends at most this many emails


def unnoticed_sql(alias: str = "webhook") -> str:
    """An SQL condition: a disabled webhook whose owner is still to be told."""
    return (
        f"NOT {alias}.active AND {alias}.owner_id IS NOT NULL"
        f" AND ({alias}.owner_notified_at IS NULL"
        f" OR {alias}.owner_notified_at < {alias}.disabled_at)"
        f" AND coalesce({alias}.disabled_reason, '') <> :owner_reason"
    )


_OWNERS_DUE = text(
    f"""
    SELECT w.owner_id FROM webhook w
    WHERE {unnoticed_sql("w")}
      AND NOT EXISTS (
        SELECT 1 FROM webhook o
        WHERE o.owner_id = w.owner_id AND o.owner_notified_at > :since)
    GROUP BY w.owner_id
    ORDER BY min(w.disabled_at), w.owner_id
    LIMIT :limit
    """
)

_LOCK_OWNERS_WEBHOOKS = text(
    f"""
    SELECT id FROM webhook
    WHERE owner_id = :owner_id AND {unnoticed_sql()}
    ORDER BY disabled_at, id
    FOR UPDATE SKIP LOCKED
    """
)


def _how_to_enable(webhook: Webhook) -> str:
    if webhook.disabled_reason == UNVERIFIED_REASON:
        return tk._(
            "Make sure the receiver answers the consent handshake, then press "
            "Verify on the webhook's page (or call webhook_verify)."
        )
    if webhook.disabled_reason == LEASE_REASON:
        return tk._("Renew it with webhook_renew.")
    if webhook.disabled_reason == GONE_REASON:
        return tk._(
            "The receiver asked for nothing more. If that was a mistake, fix "
            "the receiver, then press Enable on the webhook's page (or call "
            "webhook_update with active=true)."
        )
    return tk._(
        "Fix the receiver, then press Enable on the webhook's page (or call "
        "webhook_update with active=true); its failure count starts again at 0."
    )


def _body(user: model.User, webhooks: list[Webhook]) -> str:
    site_url = (tk.config.get("ckan.site_url") or "").rstrip("/")
    lines = [
        tk._("Hello {name},").format(name=user.fullname or user.name),
        "",
        tk._(
            "{n} of your webhooks on {site} stopped sending and are now disabled:"
        ).format(n=len(webhooks), site=tk.config.get("ckan.site_title")),
    ]
    for webhook in webhooks:
        lines += [
            "",
            f"- {', '.join(webhook.topics)} -> {webhook.address}",
            "  " + tk._("Why: {reason}").format(reason=webhook.disabled_reason),
            "  "
            + tk._("Since: {moment} UTC").format(
                moment=webhook.disabled_at.strftime("%Y-%m-%d %H:%M")
                if webhook.disabled_at
                else "-"
            ),
            "  "
            + tk._("How to re-enable it: {how}").format(how=_how_to_enable(webhook)),
            "  " + f"{site_url}/webhooks/{webhook.id}",
        ]
    lines += [
        "",
        tk._("Your webhooks: {url}").format(url=f"{site_url}/webhooks"),
    ]
    return "\n".join(lines) + "\n"


def _notify(owner_id: str, now: datetime.datetime) -> bool:
    """Mail one owner their digest; commit or roll back. True if sent."""
    from ckan.lib.mailer import mail_user

    ids = [
        row.id
        for row in model.Session.execute(
            _LOCK_OWNERS_WEBHOOKS, {"owner_id": owner_id, "owner_reason": OWNER_REASON}
        )
    ]
    user = model.Session.get(model.User, owner_id)
    if not ids or user is None or user.state != "active":
        model.Session.rollback()
        return False
    webhooks = [model.Session.get(Webhook, i) for i in ids]
    if user.email:
        subject = tk._("{site}: {n} webhook(s) disabled").format(
            site=tk.config.get("ckan.site_title"), n=len(webhooks)
        )
        try:
            mail_user(user, subject, _body(user, webhooks))
        except Exception as error:
            model.Session.rollback()
            log.warning("webhooks: could not mail %s its notice: %s", user.name, error)
            return False
    else:  # nobody to mail: the notice on their Webhooks page remains
        log.info("webhooks: %s has no email address for its notice", user.name)
    for webhook in webhooks:
        webhook.owner_notified_at = now
    model.Session.commit()
    return bool(user.email)


def notify_owners() -> int:
    """Send the digests that are due; how many emails were sent."""
    now = utcnow()
    since = now - datetime.timedelta(minutes=cfg.owner_notice_minutes())
    owners = [
        row.owner_id
        for row in model.Session.execute(
            _OWNERS_DUE,
            {"since": since, "limit": MAX_OWNERS_PER_RUN, "owner_reason": OWNER_REASON},
        )
    ]
    model.Session.commit()
    return sum(_notify(owner_id, now) for owner_id in owners)
