"""A synchronous send: ``webhook_test``'s ping, under the same rules as any delivery.

It goes through the same steps as a queued delivery (render, the per-host
schedule, the transport's deadline and address checks, recording), only now
and in this process, so the caller sees the outcome.
"""

from __future__ import annotations

import json
import time

import ckan.model as model

from ckanext.webhooks import config as cfg
from ckanext.webhooks.delivery import outcomes
from ckanext.webhooks.delivery.claiming import Claim
from ckanext.webhooks.delivery.loop import transport_from_config
from ckanext.webhooks.delivery.rendering import Renderer
from ckanext.webhooks.delivery.throttle import HostThrottle
from ckanext.webhooks.http import Outcome
from ckanext.webhooks.model import Webhook, WebhookDelivery, WebhookEvent, utcnow
from ckanext.webhooks.vocabulary import PING, DeliveryStatus

__all__ = ["ping"]


def ping(webhook: Webhook, *, commit: bool = True) -> tuple[str, Outcome]:
    """Send a ``webhook/ping`` to ``webhook`` now; return (event id, outcome).

    The ping and its log entry are committed unless ``commit`` is false.
    """
    now = utcnow()
    event = WebhookEvent(
        topic=PING,
        entity_type="webhook",
        entity_id=webhook.id,
        private=True,
        snapshot=json.dumps(
            {"id": webhook.id, "topic": webhook.topic, "topics": webhook.topics}
        ),
        created=now,
        expanded=True,
    )
    model.Session.add(event)
    model.Session.flush()
    # Never due for the workers (no next attempt): it is sent right here.
    item = WebhookDelivery(
        event_id=event.id,
        webhook_id=webhook.id,
        status=DeliveryStatus.PENDING.value,
        attempts=1,
        next_attempt_at=None,
        created=now,
        updated=now,
    )
    model.Session.add(item)
    model.Session.flush()
    claim = Claim(item.id, event, webhook, 1)
    (prepared,), _ = Renderer().render([claim])
    slots, _ = HostThrottle(cfg.max_rate_per_host()).book(prepared.host, 1)
    if slots:
        time.sleep(slots[0])  # at most the throttle's horizon, a second
        transport = transport_from_config()
        try:
            outcome = transport.post(webhook.address, prepared.body, prepared.headers)
        finally:
            transport.close()
    else:
        outcome = Outcome(error="not sent: this receiver is busy, try again shortly")
    outcomes.record(
        [(claim, outcome)],
        [],
        cfg.retry_schedule(),
        cfg.max_failures(),
        commit=commit,
    )
    return event.id, outcome
