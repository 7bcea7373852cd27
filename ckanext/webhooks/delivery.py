"""Delivery: from outbox rows to signed HTTP POSTs, with retries.

The database is the queue. ``webhook_event`` rows are expanded into one
``webhook_delivery`` row per matching webhook; due deliveries are claimed with
``FOR UPDATE SKIP LOCKED`` and a lease, so several workers share the load
without sending anything twice, and a worker that dies only delays its claimed
deliveries until the lease runs out. RQ jobs are only wake-ups: one job
delivers everything that is due, many requests at a time over keep-alive
connections, because the stock worker forks for every job.

The stock ``ckan jobs worker`` runs no RQ scheduler, so retries that fall due
later are handed to a worker by ``ckan webhooks dispatch`` (see README).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import ckan.model as model
import ckan.plugins as p
import ckan.plugins.toolkit as tk
from ckan import authz
from sqlalchemy import bindparam, text

from ckanext.webhooks import __version__, signing, topics
from ckanext.webhooks import config as cfg
from ckanext.webhooks.http import Outcome, Policy, Transport
from ckanext.webhooks.interfaces import IWebhooks
from ckanext.webhooks.matching import matching_webhooks_sql
from ckanext.webhooks.model import Webhook, WebhookEvent, utcnow

__all__ = [
    "Deliverer",
    "deliver_pending",
    "dispatch",
    "expand_events",
    "pending_work",
    "transport_from_config",
    "wake_workers",
]

log = logging.getLogger(__name__)

WAKE_KEY_TTL = 60
MAX_RETRY_AFTER = 24 * 3600
RECORD_INTERVAL = 0.5  # seconds an outcome may wait to be written with others


def _wake_key() -> str:
    return f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:wake"


def wake_workers() -> bool:
    """Queue one delivery job unless one is already waiting. Never raises."""
    from ckan.lib.redis import connect_to_redis

    try:
        if connect_to_redis().set(_wake_key(), "1", nx=True, ex=WAKE_KEY_TTL):
            tk.enqueue_job(
                deliver_pending, title="webhooks: deliver", queue=cfg.queue()
            )
            return True
    except Exception as error:
        # The events are safe in the database; `ckan webhooks dispatch` will
        # hand them over once the queue is back.
        log.warning("webhooks: could not wake a worker (%s); events wait", error)
    return False


def _clear_wake_key() -> None:
    from ckan.lib.redis import connect_to_redis

    try:
        connect_to_redis().delete(_wake_key())
    except Exception as error:
        log.warning("webhooks: could not clear the wake-up flag: %s", error)


_EXPAND = text(
    f"""
    WITH claimed AS (
        SELECT id FROM webhook_event
        WHERE NOT expanded
        ORDER BY sequence
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ), marked AS (
        UPDATE webhook_event e SET expanded = true
        FROM claimed WHERE e.id = claimed.id
        RETURNING e.id, e.topic, e.package_id, e.organization_id,
                  e.previous_package_id, e.previous_organization_id, e.sequence
    ), inserted AS (
        INSERT INTO webhook_delivery
            (event_id, webhook_id, status, attempts, next_attempt_at,
             created, updated)
        SELECT m.id, w.id, 'pending', 0, :now, :now, :now
        FROM marked m
        CROSS JOIN LATERAL ({
        matching_webhooks_sql(
            topics="ARRAY[m.topic, split_part(m.topic, '/', 1) || '/*', '*']",
            package_id="m.package_id",
            previous_package_id="m.previous_package_id",
            organization_id="m.organization_id",
            previous_organization_id="m.previous_organization_id",
        )
    }) w
        -- An event's deliveries get neighbouring ids, so they are claimed
        -- together and share one view of the entity per batch.
        ORDER BY m.sequence, w.id
        ON CONFLICT ON CONSTRAINT uq_webhook_delivery DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM marked), (SELECT count(*) FROM inserted)
    """
)


def expand_events(limit: int = 500) -> int:
    """Turn new events into one delivery per matching webhook; return events."""
    total = 0
    while True:
        events, _ = model.Session.execute(
            _EXPAND, {"limit": limit, "now": utcnow()}
        ).one()
        model.Session.commit()
        total += events
        if events < limit:
            return total


_DUE = """
    status = 'pending' AND next_attempt_at <= :now
    AND (lease_until IS NULL OR lease_until < :now)
"""

_CLAIM = text(
    f"""
    UPDATE webhook_delivery d
    SET lease_until = :lease, attempts = d.attempts + 1, updated = :now
    FROM (
        SELECT id FROM webhook_delivery
        WHERE {_DUE}
        ORDER BY next_attempt_at, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    ) due
    WHERE d.id = due.id
    RETURNING d.id, d.event_id, d.webhook_id, d.attempts
    """
)


def pending_work() -> dict[str, int]:
    now = utcnow()
    events = model.Session.execute(
        text("SELECT count(*) FROM webhook_event WHERE NOT expanded")
    ).scalar()
    due = model.Session.execute(
        text(f"SELECT count(*) FROM webhook_delivery WHERE {_DUE}"), {"now": now}
    ).scalar()
    model.Session.commit()
    return {"events": events, "deliveries": due}


def dispatch() -> dict[str, Any]:
    """Wake a worker if events wait or retries are due (cron / loop helper)."""
    work = pending_work()
    woken = bool(work["events"] or work["deliveries"]) and wake_workers()
    return {**work, "woken": woken}


def transport_from_config() -> Transport:
    return Transport(
        Policy.from_entries(cfg.allow_private_addresses(), cfg.allowed_hosts()),
        timeout=cfg.timeout(),
        max_response_bytes=cfg.max_response_bytes(),
        pool_size=cfg.concurrency(),
    )


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class Claim:
    delivery_id: int
    event: WebhookEvent
    webhook: Webhook
    attempt: int


@dataclasses.dataclass
class Prepared:
    claim: Claim
    body: bytes
    headers: dict[str, str]


class Skip(Exception):
    """The webhook's owner may not see this event: it is not sent."""


class EntityViews:
    """What each webhook owner may see of an event, computed once per batch."""

    def __init__(self) -> None:
        self._shown: dict[tuple[str, str, str | None], Any] = {}
        self._users: dict[str, model.User | None] = {}

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
            user = self._user(owner_id)
            if owner_id is not None and user is None:
                self._shown[key] = Skip("owner is gone")
            else:
                context = {
                    "user": user.name if user else "",
                    "auth_user_obj": user,
                    "ignore_auth": False,
                    "use_cache": False,
                }
                try:
                    shown = tk.get_action(action)(context, dict(data))
                    if shown.get("state") != "active":
                        raise Skip("not active")
                    self._shown[key] = shown
                except (tk.NotAuthorized, tk.ObjectNotFound, Skip) as error:
                    self._shown[key] = Skip(str(error) or "hidden")
        value = self._shown[key]
        if isinstance(value, Skip):
            raise value
        return value

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

    def _may_know_of_deleted(self, event: WebhookEvent, owner_id: str | None) -> bool:
        if not event.private:
            return True
        user = self._user(owner_id)
        if user is None:
            return False
        return bool(user.sysadmin) or authz.has_user_permission_for_group_or_org(
            event.organization_id, user.name, "read"
        )

    @staticmethod
    def _is_gone(event: WebhookEvent) -> bool:
        """Deleted or purged since the event (not merely hidden from the owner)."""
        if event.entity_type in ("organization", "group"):
            objs = [model.Group.get(event.entity_id)]
        else:
            objs = [model.Package.get(event.package_id)]
            if event.entity_type == "resource":
                objs.append(model.Resource.get(event.entity_id))
        return any(obj is None or obj.state == "deleted" for obj in objs)

    def _gone(self, event: WebhookEvent, webhook: Webhook, snapshot: Any) -> Any:
        if not self._may_know_of_deleted(event, webhook.owner_id):
            raise Skip("private")
        return {**snapshot, "state": "deleted"}

    def entity(self, event: WebhookEvent, webhook: Webhook) -> Any:
        snapshot = json.loads(event.snapshot or "{}")
        if event.topic == topics.PING:
            return snapshot
        if event.entity_type == "custom":
            if event.package_id:  # about a dataset: only for those who may read it
                self._package(event.package_id, webhook.owner_id)
            return snapshot
        if event.topic.endswith("/delete"):
            return self._gone(event, webhook, snapshot)
        try:
            if event.entity_type in ("organization", "group"):
                return self._group(event, webhook.owner_id)
            pkg = self._package(event.package_id, webhook.owner_id)
            if event.entity_type == "dataset":
                return pkg
            for resource in pkg.get("resources", []):
                if resource["id"] == event.entity_id:
                    return resource
            raise Skip("resource gone")
        except Skip:
            # Deleted before this delivery: the event still happened, so it
            # goes out with what is known of the entity - to whoever could
            # have read it. Hidden (private, draft) stays hidden.
            if self._is_gone(event):
                return self._gone(event, webhook, snapshot)
            raise


def public_view(webhook: Webhook) -> dict[str, Any]:
    """What payload plugins may know of a webhook: no secrets."""
    return {
        "id": webhook.id,
        "topic": webhook.topic,
        "address": webhook.address,
        "owner_id": webhook.owner_id,
        "dataset": webhook.package_id,
        "organization": webhook.organization_id,
    }


def signing_secrets(webhook: Webhook, now: datetime.datetime) -> list[str]:
    secrets = [webhook.secret]
    if webhook.previous_secret and (
        webhook.previous_secret_expires and webhook.previous_secret_expires > now
    ):
        secrets.append(webhook.previous_secret)
    return secrets


def build_request(
    event: WebhookEvent, webhook: Webhook, entity: Any
) -> tuple[bytes, dict[str, str]]:
    payload = {
        "id": event.id,
        "topic": event.topic,
        "type": event.topic,
        "timestamp": _iso(event.created),
        "sequence": event.sequence,
        "webhook_id": webhook.id,
        "ckan": tk.config.get("ckan.site_url"),
        "entity_type": event.entity_type,
        "entity": entity,
    }
    for plugin in p.PluginImplementations(IWebhooks):
        payload = plugin.webhook_payload(payload, event.topic, public_view(webhook))
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"ckanext-webhooks/{__version__}",
        "webhook-id": event.id,
        "webhook-timestamp": str(now),
        "webhook-signature": signing.signature_header(
            signing_secrets(webhook, utcnow()), event.id, now, body
        ),
    }
    return body, headers


# A batch of outcomes is written with one statement per table, the rows
# passed as arrays (see _columns): row-by-row executemany costs a round trip
# per row, which made recording slower than sending.
_RECORD_ATTEMPT = text(
    """
    INSERT INTO webhook_attempt
        (delivery_id, webhook_id, event_id, topic, attempt, created,
         status_code, error, latency_ms, response, outcome)
    SELECT * FROM unnest(
        CAST(:delivery_id AS bigint[]), CAST(:webhook_id AS text[]),
        CAST(:event_id AS text[]), CAST(:topic AS text[]),
        CAST(:attempt AS integer[]), CAST(:created AS timestamp[]),
        CAST(:status_code AS integer[]), CAST(:error AS text[]),
        CAST(:latency_ms AS integer[]), CAST(:response AS text[]),
        CAST(:outcome AS text[]))
    """
)

_UPDATE_DELIVERY = text(
    """
    UPDATE webhook_delivery d
    SET status = u.status, next_attempt_at = u.next_attempt_at,
        lease_until = NULL, updated = u.updated,
        last_status_code = u.status_code, last_error = u.error
    FROM unnest(
        CAST(:delivery_id AS bigint[]), CAST(:status AS text[]),
        CAST(:next_attempt_at AS timestamp[]), CAST(:now AS timestamp[]),
        CAST(:status_code AS integer[]), CAST(:error AS text[])
    ) AS u(id, status, next_attempt_at, updated, status_code, error)
    WHERE d.id = u.id
    """
)

_LOCK_WEBHOOKS = text(
    "SELECT id FROM webhook WHERE id = ANY(CAST(:ids AS text[])) "
    "ORDER BY id FOR NO KEY UPDATE"
)

_UPDATE_LAST_DELIVERY = text(
    """
    UPDATE webhook w
    SET last_delivery_at = :now, last_delivery_status = u.status
    FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[])) AS u(id, status)
    WHERE w.id = u.id
    """
)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as one list per column, for the unnest() statements above."""
    return {key: [row[key] for row in rows] for key in rows[0]}


class Deliverer:
    """Sends due deliveries concurrently and records every outcome."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or transport_from_config()
        self.concurrency = cfg.concurrency()
        self.schedule = cfg.retry_schedule()
        self.max_failures = cfg.max_failures()
        # Claimed rows wait for at most two rounds of sends before their own.
        lease_seconds = 3 * cfg.timeout() + 5
        self.lease = datetime.timedelta(seconds=lease_seconds)
        self.stats = {"sent": 0, "succeeded": 0, "failed": 0, "skipped": 0}
        # What each owner saw of each event in the previous batch: an event's
        # deliveries often span two batches and need not run package_show
        # again (the view was taken after the event, so it is still valid).
        self._seen: dict[tuple[str, str | None], Any] = {}

    def close(self) -> None:
        self.transport.close()

    # -- claiming --------------------------------------------------------
    def claim(self, limit: int) -> list[Claim]:
        now = utcnow()
        rows = model.Session.execute(
            _CLAIM, {"now": now, "lease": now + self.lease, "limit": limit}
        ).all()
        model.Session.commit()
        if not rows:
            return []
        events = {
            e.id: e
            for e in model.Session.query(WebhookEvent).filter(
                WebhookEvent.id.in_({r.event_id for r in rows})
            )
        }
        hooks = {
            w.id: w
            for w in model.Session.query(Webhook).filter(
                Webhook.id.in_({r.webhook_id for r in rows})
            )
        }
        return [
            Claim(r.id, events[r.event_id], hooks[r.webhook_id], r.attempts)
            for r in rows
            if r.event_id in events and r.webhook_id in hooks
        ]

    def prepare(self, claims: list[Claim]) -> tuple[list[Prepared], list[Claim]]:
        views = EntityViews()
        ready, skipped = [], []
        seen: dict[tuple[str, str | None], Any] = {}
        for claim in claims:
            if not claim.webhook.active and claim.event.topic != topics.PING:
                skipped.append(claim)
                continue
            key = (claim.event.id, claim.webhook.owner_id)
            if key not in seen:
                if key in self._seen:
                    seen[key] = self._seen[key]
                else:
                    try:
                        seen[key] = views.entity(claim.event, claim.webhook)
                    except Skip as hidden:
                        seen[key] = hidden
            entity = seen[key]
            if isinstance(entity, Skip):
                skipped.append(claim)
                continue
            body, headers = build_request(claim.event, claim.webhook, entity)
            ready.append(Prepared(claim, body, headers))
        self._seen = seen
        return ready, skipped

    def send(self, prepared: Prepared) -> Outcome:
        return self.transport.post(
            prepared.claim.webhook.address, prepared.body, prepared.headers
        )

    # -- recording -------------------------------------------------------
    def _retry_delay(self, attempt: int, outcome: Outcome) -> float | None:
        if attempt > len(self.schedule):
            return None
        if outcome.retry_after is not None and outcome.status in (429, 503):
            return min(outcome.retry_after, MAX_RETRY_AFTER)
        delay = self.schedule[attempt - 1]
        return delay + random.uniform(0, delay * 0.1)

    def record(
        self, results: list[tuple[Claim, Outcome]], skipped: list[Claim]
    ) -> None:
        now = utcnow()
        attempts, updates = [], []
        succeeded_hooks: set[str] = set()
        given_up: dict[str, int] = {}
        gone: set[str] = set()
        for claim, outcome in results:
            event, hook = claim.event, claim.webhook
            if outcome.ok:
                status, next_at, label = "succeeded", None, "success"
                succeeded_hooks.add(hook.id)
            elif outcome.status == 410:
                status, next_at, label = "failed", None, "gone"
                gone.add(hook.id)
            elif event.topic == topics.PING:  # answered at once, never retried
                status, next_at, label = "failed", None, "failed"
            else:
                delay = self._retry_delay(claim.attempt, outcome)
                if delay is None:
                    status, next_at, label = "failed", None, "given up"
                    given_up[hook.id] = given_up.get(hook.id, 0) + 1
                else:
                    status, label = "pending", "retry scheduled"
                    next_at = now + datetime.timedelta(seconds=delay)
            self.stats["sent"] += 1
            self.stats["succeeded" if outcome.ok else "failed"] += 1
            attempts.append(
                {
                    "delivery_id": claim.delivery_id,
                    "webhook_id": hook.id,
                    "event_id": event.id,
                    "topic": event.topic,
                    "attempt": claim.attempt,
                    "created": now,
                    "status_code": outcome.status,
                    "error": outcome.error,
                    "latency_ms": outcome.latency_ms,
                    # PostgreSQL text cannot hold NUL characters.
                    "response": outcome.body.decode("utf-8", "replace").replace(
                        "\x00", "\ufffd"
                    ),
                    "outcome": label,
                }
            )
            updates.append(
                {
                    "delivery_id": claim.delivery_id,
                    "status": status,
                    "next_attempt_at": next_at,
                    "now": now,
                    "status_code": outcome.status,
                    "error": outcome.error,
                }
            )
        for claim in skipped:
            self.stats["skipped"] += 1
            updates.append(
                {
                    "delivery_id": claim.delivery_id,
                    "status": "skipped",
                    "next_attempt_at": None,
                    "now": now,
                    "status_code": None,
                    "error": None,
                }
            )
        if attempts:
            model.Session.execute(_RECORD_ATTEMPT, _columns(attempts))
        if updates:
            model.Session.execute(_UPDATE_DELIVERY, _columns(updates))
        self._update_webhooks(results, succeeded_hooks, given_up, gone, now)
        model.Session.commit()

    def _update_webhooks(self, results, succeeded, given_up, gone, now) -> None:
        last: dict[str, str] = {}
        for claim, outcome in results:
            last[claim.webhook.id] = (
                str(outcome.status) if outcome.status is not None else outcome.error
            )
        if last:
            # Locked in id order first: workers recording the same webhooks at
            # the same time then wait for each other instead of deadlocking.
            ids = sorted(last)
            model.Session.execute(_LOCK_WEBHOOKS, {"ids": ids})
            model.Session.execute(
                _UPDATE_LAST_DELIVERY,
                {"now": now, "ids": ids, "statuses": [last[i] for i in ids]},
            )
        if succeeded:
            model.Session.execute(
                text(
                    "UPDATE webhook SET failure_count = 0 WHERE id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": list(succeeded)},
            )
        for hook_id, count in given_up.items():
            model.Session.execute(
                text(
                    "UPDATE webhook SET failure_count = failure_count + :n "
                    "WHERE id = :id"
                ),
                {"n": count, "id": hook_id},
            )
            if self.max_failures:
                model.Session.execute(
                    text(
                        "UPDATE webhook SET active = false, disabled_at = :now, "
                        "disabled_reason = :reason "
                        "WHERE id = :id AND active AND failure_count >= :max"
                    ),
                    {
                        "id": hook_id,
                        "now": now,
                        "max": self.max_failures,
                        "reason": f"{self.max_failures} consecutive events "
                        "could not be delivered",
                    },
                )
        for hook_id in gone:
            model.Session.execute(
                text(
                    "UPDATE webhook SET active = false, disabled_at = :now, "
                    "disabled_reason = :reason WHERE id = :id AND active"
                ),
                {"id": hook_id, "now": now, "reason": "receiver answered 410 Gone"},
            )

    # -- the loop --------------------------------------------------------
    def run(self, budget_seconds: float | None = None) -> dict[str, int]:
        """Deliver until nothing is due (or the time budget is spent)."""
        deadline = time.monotonic() + budget_seconds if budget_seconds else None
        inflight: dict[Future[Outcome], Prepared] = {}
        # Outcomes are written in batches: one transaction per completed
        # request would cost more than the request itself.
        unrecorded: list[tuple[Claim, Outcome]] = []
        recorded_at = time.monotonic()
        with ThreadPoolExecutor(self.concurrency, "webhooks-send") as pool:
            drained = False
            while True:
                out_of_time = deadline is not None and time.monotonic() > deadline
                room = 2 * self.concurrency - len(inflight)
                if not drained and not out_of_time and room >= self.concurrency:
                    expand_events()
                    claims = self.claim(room)
                    drained = not claims
                    ready, skipped = self.prepare(claims)
                    if skipped:
                        self.record([], skipped)
                    for prepared in ready:
                        inflight[pool.submit(self.send, prepared)] = prepared
                if not inflight:
                    if drained or out_of_time:
                        break
                    continue
                done, _ = wait(inflight, timeout=1.0, return_when=FIRST_COMPLETED)
                if done:
                    unrecorded += [(inflight.pop(f).claim, f.result()) for f in done]
                    drained = False
                if unrecorded and (
                    len(unrecorded) >= self.concurrency
                    or not inflight
                    or time.monotonic() - recorded_at >= RECORD_INTERVAL
                ):
                    self.record(unrecorded, [])
                    unrecorded, recorded_at = [], time.monotonic()
        return self.stats


def deliver_pending(budget_seconds: float | None = None) -> dict[str, int]:
    """The RQ job: deliver everything that is due, then return."""
    _clear_wake_key()
    if budget_seconds is None:
        budget_seconds = max(10.0, tk.config.get("ckan.jobs.timeout") / 2)
    deliverer = Deliverer()
    try:
        stats = deliverer.run(budget_seconds)
    finally:
        deliverer.close()
        model.Session.remove()
    if stats["sent"] or stats["skipped"]:
        log.info("webhooks: delivered %(succeeded)s, failed %(failed)s", stats)
    if pending_work()["deliveries"]:
        wake_workers()  # out of time with work left: hand over to a new job
    return stats
