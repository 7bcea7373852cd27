"""The event feed: the events a caller may see, in commit order, page by page.

What a receiver missed, or wants to check, it reads here (``webhook_event_list``)
with the same ids as the deliveries' ``webhook-id``, so push and pull merge
without duplicates. Each item is the body of a delivery to a webhook of the
caller, minus what belongs to a webhook (``webhook_id``, ``sequence``), and
what the caller may see is decided as for deliveries, when the feed is read
(``delivery.visibility``, the caller in the owner's place).

Positions. An event's ``sequence`` is taken when it is inserted, but
transactions commit in another order: paging by it alone would step over an
event whose transaction commits after a later one was read. So the feed
pages by ``(txid, sequence)``, the writing transaction's id first, and shows
only events of transactions older than every transaction still running in
this database: whatever commits later has a larger position than anything
already shown.

The cursor is sealed: it carries that position, encrypted and authenticated
under the site's ``SECRET_KEY``, so it does not tell how many hidden events
lie between two visible ones. It stays valid while events arrive and while
``prune`` deletes old ones.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import secrets
from typing import Any

import ckan.model as model
import ckan.plugins.toolkit as tk
from sqlalchemy import text

from ckanext.webhooks.delivery.payload import event_body
from ckanext.webhooks.delivery.visibility import Hidden, ReaderClassViews
from ckanext.webhooks.model import Webhook, WebhookEvent
from ckanext.webhooks.vocabulary import EVENT_PREFIX, PING

__all__ = [
    "END",
    "START",
    "BadCursor",
    "Page",
    "Position",
    "position_of",
    "read",
    "seal",
    "unseal",
]

Position = tuple[int, int]  # (txid, sequence) of an event, or just before one
START: Position = (-1, 0)
END: Position = (2**63 - 1, 2**63 - 1)
SCAN_FACTOR = 10  # events looked at per item asked for, at most
_CURSOR_PREFIX = "cur_"


class BadCursor(ValueError):
    """``since`` is neither a cursor, a time nor a known event id."""


def _key(purpose: bytes) -> bytes:
    secret = str(tk.config.get("SECRET_KEY") or "").encode()
    return hmac.new(
        secret, b"ckanext-webhooks feed " + purpose, hashlib.sha256
    ).digest()


def _masked(value: bytes, nonce: bytes) -> bytes:
    """``value`` (16 bytes) XOR a pad drawn from the key and ``nonce``: the
    same call masks and unmasks."""
    pad = hmac.new(_key(b"pad"), nonce, hashlib.sha256).digest()[:16]
    return bytes(a ^ b for a, b in zip(value, pad, strict=True))


def seal(position: Position) -> str:
    """An opaque cursor for ``position``."""
    nonce = secrets.token_bytes(8)
    plain = b"".join(n.to_bytes(8, "big", signed=True) for n in position)
    body = nonce + _masked(plain, nonce)
    tag = hmac.new(_key(b"tag"), body, hashlib.sha256).digest()[:12]
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(body + tag).decode().rstrip("=")


def unseal(cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor[len(_CURSOR_PREFIX) :] + "==")
    except ValueError:
        raise BadCursor(cursor) from None
    body, tag = raw[:24], raw[24:]
    expected = hmac.new(_key(b"tag"), body, hashlib.sha256).digest()[:12]
    if len(raw) != 36 or not hmac.compare_digest(tag, expected):
        raise BadCursor(cursor)
    plain = _masked(body[8:], body[:8])
    return (
        int.from_bytes(plain[:8], "big", signed=True),
        int.from_bytes(plain[8:], "big", signed=True),
    )


def position_of(since: str | None) -> Position:
    """The position after which the feed (or a recovery window) starts:
    a cursor's; an event's own; just before the first event after a time."""
    if not since:
        return START
    if since.startswith(_CURSOR_PREFIX):
        return unseal(since)
    if since.startswith(EVENT_PREFIX):
        found = model.Session.execute(
            text("SELECT txid, sequence FROM webhook_event WHERE id = :id"),
            {"id": since},
        ).first()
        if found is None:
            raise BadCursor(since)
        return tuple(found)
    try:
        moment = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise BadCursor(since) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    first_after = model.Session.execute(
        text(
            "SELECT txid, sequence FROM webhook_event WHERE created > :moment "
            "ORDER BY txid, sequence LIMIT 1"
        ),
        {"moment": moment},
    ).first()
    if first_after is None:  # nothing yet: from what commits next
        return _settled(), 0
    return first_after[0], first_after[1] - 1


# The oldest transaction still running in this database, as a 64-bit txid
# (pg_stat_activity gives 32-bit xids: the epoch comes from the snapshot).
# Not txid_snapshot_xmin, which counts every database of the cluster: a long
# load into another database (the DataStore's, say) would hold the feed back.
# Events are written only by CKAN's own processes, whose role sees its own
# sessions' xids in pg_stat_activity.
_SETTLED = text(
    """
    WITH now AS (SELECT txid_snapshot_xmax(txid_current_snapshot()) AS xmax),
    running AS (
        SELECT ((now.xmax >> 32) << 32) + CAST(CAST(a.backend_xid AS text) AS bigint)
            AS txid, now.xmax
        FROM pg_stat_activity a, now
        WHERE a.datname = current_database() AND a.backend_xid IS NOT NULL
          AND a.pid != pg_backend_pid()
    )
    SELECT coalesce(
        min(CASE WHEN txid > xmax THEN txid - 4294967296 ELSE txid END),
        (SELECT xmax FROM now))
    FROM running
    """
)


def _settled() -> int:
    """Transactions of this database with smaller ids than this have ended."""
    # pg_stat_activity is read once per transaction unless told otherwise.
    model.Session.execute(text("SELECT pg_stat_clear_snapshot()"))
    return model.Session.execute(_SETTLED).scalar()


def topic_condition(topic: str | None) -> tuple[str, dict[str, Any]]:
    """SQL on ``e.topic`` for a subscription-style topic (``*``, ``x/*``)."""
    if not topic or topic == "*":
        return "", {}
    if topic.endswith("/*"):
        return " AND e.topic LIKE :topic_prefix", {"topic_prefix": topic[:-1] + "%"}
    return " AND e.topic = :topic", {"topic": topic}


@dataclasses.dataclass
class Page:
    items: list[dict[str, Any]]
    next: str  # the cursor to pass back as ``since``
    more: bool  # events after ``next`` can be read already: read on at once


_EVENTS = """
    SELECT e.* FROM webhook_event e
    WHERE (e.txid, e.sequence) > (:txid, :sequence) AND e.txid < :settled
      AND e.topic != :ping AND e.entity_type != 'webhook'
"""


def read(
    caller_id: str | None,
    since: str | None,
    limit: int,
    topic: str | None = None,
    dataset: str | None = None,
    organization: str | None = None,
) -> Page:
    """Up to ``limit`` events the caller may see after ``since``.

    At most ``SCAN_FACTOR`` times as many events are looked at: a page may
    hold fewer items than asked for, and ``next`` then continues after the
    last one looked at; ``more`` says whether events after it can be read.
    """
    after = position_of(since)
    sql = _EVENTS
    params: dict[str, Any] = {
        "txid": after[0],
        "sequence": after[1],
        "settled": _settled(),
        "ping": PING,
    }
    condition, topic_params = topic_condition(topic)
    sql += condition
    params.update(topic_params)
    if dataset:
        sql += " AND :dataset IN (e.package_id, e.previous_package_id)"
        params["dataset"] = dataset
    if organization:
        sql += " AND :organization IN (e.organization_id, e.previous_organization_id)"
        params["organization"] = organization
    sql += " ORDER BY e.txid, e.sequence LIMIT :scan"
    params["scan"] = limit * SCAN_FACTOR
    events = (
        model.Session.query(WebhookEvent)
        .from_statement(text(sql))
        .params(**params)
        .all()
    )
    reader = Webhook(owner_id=caller_id)  # the caller, in an owner's place
    views = ReaderClassViews()
    views.prepare((event, caller_id) for event in events)
    items: list[dict[str, Any]] = []
    last = after
    more = len(events) == params["scan"]
    for event in events:
        if len(items) == limit:
            more = True
            break
        last = (event.txid, event.sequence)
        try:
            entity = views.entity(event, reader)
        except Hidden:
            continue
        items.append(event_body(event, entity))
    return Page(items, seal(last), more)
