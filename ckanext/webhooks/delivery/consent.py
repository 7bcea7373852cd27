"""Receivers consent before CKAN sends: the CloudEvents abuse-protection handshake.

Before the first delivery to a webhook that must be verified
(``ckanext.webhooks.verification``), CKAN sends its address an ``OPTIONS``
request naming the site (``WebHook-Request-Origin``), the rate it would like
(``WebHook-Request-Rate``, per minute) and a callback URL
(``WebHook-Request-Callback``). The receiver consents either at once, with a
2xx answer whose ``WebHook-Allowed-Origin`` is the site or ``*``, or later,
by calling the callback URL (GET or POST). ``WebHook-Allowed-Rate`` on either
becomes the webhook's ceiling.

Until then the webhook's deliveries wait: ``held_sql`` keeps them out of
what is due, unsent and not lost. Handshakes are retried on a schedule;
a webhook whose receiver has not consented ``verification_hours`` after the
first handshake is disabled with ``UNVERIFIED_REASON``. The handshake goes
through the same transport as deliveries: the same address checks, deadline
and caps.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
from concurrent.futures import Future

import ckan.model as model
import ckan.plugins.toolkit as tk
from sqlalchemy import text

from ckanext.webhooks import __version__
from ckanext.webhooks import config as cfg
from ckanext.webhooks.http import Outcome, Transport
from ckanext.webhooks.model import Webhook, utcnow
from ckanext.webhooks.vocabulary import UNVERIFIED_REASON

__all__ = [
    "Answer",
    "Handshakes",
    "accept_callback",
    "callback_token",
    "due_count",
    "expire_overdue",
    "handshake",
    "handshake_now",
    "held_sql",
    "judge",
    "parse_rate",
    "required",
    "state",
]

# Minutes between handshakes while a receiver has not consented; the last
# repeats until the webhook's time to consent runs out.
RETRY_MINUTES = (1, 5, 15, 30, 60)
MAX_ALLOWED_RATE = 1_000_000  # per minute; more is the same as none
BATCH = 50  # handshakes a delivery job starts at once


def _who(mode: str) -> str | None:
    """SQL: which webhooks (alias ``w``) the mode requires to be verified."""
    return {"anonymous": "w.owner_id IS NULL", "all": "true"}.get(mode)


def required(webhook: Webhook) -> bool:
    """Whether ``webhook`` may receive nothing until its receiver consents."""
    mode = cfg.verification()
    return mode == "all" or (mode == "anonymous" and webhook.owner_id is None)


def state(webhook: Webhook) -> str:
    """``verified``, ``pending``, ``failed`` or ``not required``."""
    if webhook.verified_at is not None:
        return "verified"
    if not webhook.active and webhook.disabled_reason == UNVERIFIED_REASON:
        return "failed"
    return "pending" if required(webhook) else "not required"


def held_sql(delivery: str) -> str:
    """SQL, ``AND ...``: deliveries (table alias ``delivery``) that are not held
    for their receiver's consent; empty when no webhook needs consent."""
    who = _who(cfg.verification())
    if who is None:
        return ""
    return f"""
    AND NOT EXISTS (
        SELECT 1 FROM webhook w WHERE w.id = {delivery}.webhook_id
        AND w.active AND w.verified_at IS NULL AND {who})
    """


# The callback URL's token: derived, not stored. It names the webhook and the
# verification under way (a new address starts a new one), so it is useless
# for any other webhook or once the address changed.
def callback_token(webhook: Webhook) -> str:
    started = webhook.verification_started or webhook.created
    message = f"consent:{webhook.id}:{started.isoformat()}".encode()
    key = str(tk.config.get("SECRET_KEY") or "").encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _callback_url(webhook: Webhook) -> str:
    return tk.url_for(
        "webhooks_consent.grant",
        id=webhook.id,
        token=callback_token(webhook),
        _external=True,
    )


def _requested_rate(webhook: Webhook) -> int | None:
    """Per minute: the owner's ceiling, else the site's per-host ceiling."""
    if webhook.rate_limit:
        return webhook.rate_limit
    return cfg.max_rate_per_host() * 60 or None


def _request_headers(webhook: Webhook) -> dict[str, str]:
    # The receiver's gateway may ask for its headers on the handshake too.
    headers = {
        **webhook.custom_headers,
        "User-Agent": f"ckanext-webhooks/{__version__}",
        "WebHook-Request-Origin": cfg.site_origin(),
        "WebHook-Request-Callback": _callback_url(webhook),
    }
    rate = _requested_rate(webhook)
    if rate:
        headers["WebHook-Request-Rate"] = str(rate)
    return headers


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a handshake (or a callback) came to."""

    granted: bool
    rate: int | None = None  # the receiver's ceiling, per minute
    reason: str | None = None  # why not granted, in plain words
    status: int | None = None
    waiting: bool = False  # answered, consent to come through the callback


def parse_rate(value: str | None) -> tuple[bool, int | None]:
    """(readable, per minute) of a ``WebHook-Allowed-Rate``; ``*`` or none
    given: no ceiling."""
    if value is None or value.strip() == "*":
        return True, None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or int(value) == 0:
        return False, None
    rate = int(value)
    return True, (None if rate >= MAX_ALLOWED_RATE else rate)


def _same_origin(allowed: str, origin: str) -> bool:
    allowed = allowed.strip().lower()
    for scheme in ("https://", "http://"):
        allowed = allowed.removeprefix(scheme)
    return allowed == "*" or allowed.rstrip("/") == origin


def judge(outcome: Outcome) -> Answer:
    """Consent, refusal, or consent to come by callback, from an answer."""
    if outcome.status is None:
        return Answer(False, reason=outcome.error or "no answer")
    status = outcome.status
    if not outcome.ok:
        hint = " (it does not take OPTIONS requests)" if status == 405 else ""
        return Answer(False, reason=f"answered {status}{hint}", status=status)
    allowed = outcome.header("WebHook-Allowed-Origin")
    if allowed is None:
        return Answer(
            False,
            reason=f"answered {status} without WebHook-Allowed-Origin: "
            "waiting for the receiver to call the callback URL",
            status=status,
            waiting=True,
        )
    origin = cfg.site_origin()
    if not _same_origin(allowed, origin):
        return Answer(
            False,
            reason=f"WebHook-Allowed-Origin does not allow {origin}",
            status=status,
        )
    readable, rate = parse_rate(outcome.header("WebHook-Allowed-Rate"))
    if not readable:
        return Answer(
            False,
            reason="WebHook-Allowed-Rate must be a whole number above 0, or *",
            status=status,
        )
    return Answer(True, rate=rate, status=status)


def _grant(webhook: Webhook, rate: int | None, now: datetime.datetime) -> None:
    webhook.verified_at = now
    webhook.allowed_rate = rate
    webhook.verification_due = None
    webhook.verification_error = None
    if not webhook.active and webhook.disabled_reason == UNVERIFIED_REASON:
        webhook.active = True
        webhook.disabled_at = None
        webhook.disabled_reason = None


def _begin(webhook: Webhook, now: datetime.datetime) -> None:
    """Count one more handshake (the first starts the time to consent)."""
    if webhook.verification_started is None:
        webhook.verification_started = now
    webhook.verification_attempts = (webhook.verification_attempts or 0) + 1


def _record(webhook: Webhook, answer: Answer, now: datetime.datetime) -> None:
    if answer.granted:
        _grant(webhook, answer.rate, now)
        return
    if webhook.verified_at is not None:
        # Asked again and not granted: it keeps the consent it gave; a
        # receiver that wants nothing more answers 410 Gone to deliveries.
        webhook.verification_error = answer.reason
        return
    webhook.verification_error = answer.reason
    step = min(max(webhook.verification_attempts, 1), len(RETRY_MINUTES)) - 1
    webhook.verification_due = now + datetime.timedelta(minutes=RETRY_MINUTES[step])


def handshake(webhook: Webhook, transport: Transport) -> Answer:
    """Ask ``webhook``'s receiver now and record the answer (the caller
    commits). Used by ``webhook_verify``."""
    _begin(webhook, utcnow())
    outcome = transport.submit(
        webhook.address, b"", _request_headers(webhook), method="OPTIONS"
    ).result()
    answer = judge(outcome)
    _record(webhook, answer, utcnow())
    return answer


def handshake_now(webhook: Webhook) -> Answer:
    """``handshake`` on a transport of its own (``webhook_verify``)."""
    from ckanext.webhooks.delivery.loop import transport_from_config

    transport = transport_from_config()
    try:
        return handshake(webhook, transport)
    finally:
        transport.close()


def accept_callback(webhook_id: str, token: str, rate_header: str | None) -> bool:
    """The receiver called its callback URL: consent, if the token is the one
    of the verification under way. False for anything else (the caller shows
    it as missing). The caller commits."""
    webhook = model.Session.get(Webhook, webhook_id)
    # The token is compared even for a webhook that is missing (against a
    # stand-in): an answer's timing must not tell which ids exist.
    expected = callback_token(webhook or Webhook(id=webhook_id, created=utcnow()))
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return False
    if webhook is None or webhook.verification_started is None:
        return False
    if webhook.verified_at is not None:
        return True  # called twice: already consented
    if not webhook.active:
        return False  # its time ran out, or its owner disabled it
    readable, rate = parse_rate(rate_header)
    if not readable:
        return False
    _grant(webhook, rate, utcnow())
    return True


_CLAIM = """
    UPDATE webhook w
    SET verification_due = :lease,
        verification_started = coalesce(w.verification_started, :now),
        verification_attempts = w.verification_attempts + 1
    FROM (
        SELECT w.id FROM webhook w
        WHERE w.active AND w.verified_at IS NULL AND {who}
          AND (w.verification_due IS NULL OR w.verification_due <= :now)
        ORDER BY w.verification_due NULLS FIRST
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) due
    WHERE w.id = due.id
    RETURNING w.id
"""

_EXPIRE = """
    UPDATE webhook w
    SET active = false, disabled_at = :now, disabled_reason = :reason
    WHERE w.active AND w.verified_at IS NULL AND {who}
      AND w.verification_started < :cutoff
"""

_DUE = """
    SELECT count(*) FROM webhook w
    WHERE w.active AND w.verified_at IS NULL AND {who}
      AND (w.verification_due IS NULL OR w.verification_due <= :now)
"""


def _claim_due(limit: int, lease: datetime.timedelta) -> list[Webhook]:
    """Webhooks whose handshake is due, taken with a lease; committed."""
    who = _who(cfg.verification())
    if who is None:
        return []
    now = utcnow()
    ids = [
        row.id
        for row in model.Session.execute(
            text(_CLAIM.format(who=who)),
            {"now": now, "lease": now + lease, "limit": limit},
        )
    ]
    model.Session.commit()
    if not ids:
        return []
    return model.Session.query(Webhook).filter(Webhook.id.in_(ids)).all()


def expire_overdue(now: datetime.datetime) -> int:
    """Disable webhooks whose receiver did not consent in time (in the
    caller's transaction); return how many."""
    who = _who(cfg.verification())
    if who is None:
        return 0
    cutoff = now - datetime.timedelta(hours=cfg.verification_hours())
    return model.Session.execute(
        text(_EXPIRE.format(who=who)),
        {"now": now, "reason": UNVERIFIED_REASON, "cutoff": cutoff},
    ).rowcount


def due_count(now: datetime.datetime) -> int:
    """How many handshakes are due (for the dispatcher's check)."""
    who = _who(cfg.verification())
    if who is None:
        return 0
    return model.Session.execute(text(_DUE.format(who=who)), {"now": now}).scalar()


class Handshakes:
    """The handshakes of a delivery job: started and collected between its
    other steps, never waited for, so a slow receiver holds up nobody."""

    def __init__(self, transport: Transport, lease: datetime.timedelta) -> None:
        self.transport = transport
        self.lease = lease
        self.pending: dict[Future[Outcome], tuple[str, str]] = {}  # id, address

    def start_due(self) -> int:
        """Start the handshakes that are due; return how many."""
        if self.pending:
            return 0
        webhooks = _claim_due(BATCH, self.lease)
        for webhook in webhooks:
            future = self.transport.submit(
                webhook.address, b"", _request_headers(webhook), method="OPTIONS"
            )
            self.pending[future] = (webhook.id, webhook.address)
        return len(webhooks)

    def collect(self) -> int:
        """Record the handshakes that have finished; return how many consented."""
        done = [future for future in self.pending if future.done()]
        if not done:
            return 0
        granted = 0
        now = utcnow()
        for future in done:
            webhook_id, address = self.pending.pop(future)
            webhook = model.Session.get(Webhook, webhook_id)
            if (
                webhook is None
                or webhook.address != address
                or webhook.verified_at is not None
            ):
                continue  # deleted, moved, or consented by callback meanwhile
            answer = judge(future.result())
            _record(webhook, answer, now)
            granted += answer.granted
        model.Session.commit()
        return granted
