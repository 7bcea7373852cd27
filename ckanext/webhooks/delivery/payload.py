"""What is sent: the JSON body of a delivery and its signed headers.

Bodies follow the payload documented in docs/topics.rst; headers follow
Standard Webhooks (``webhook-id`` is the event id, the same on every retry
and redelivery, so receivers can de-duplicate).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import ckan.plugins as p
import ckan.plugins.toolkit as tk

from ckanext.webhooks import __version__, signing
from ckanext.webhooks import config as cfg
from ckanext.webhooks.interfaces import IWebhooks
from ckanext.webhooks.logic.dictization import webhook_dictize
from ckanext.webhooks.model import Webhook, WebhookEvent, utcnow
from ckanext.webhooks.vocabulary import isoformat

__all__ = ["event_body", "render", "signing_secrets"]


def signing_secrets(webhook: Webhook, now: datetime.datetime) -> list[str]:
    """The current secret, and the previous one while a rotation overlaps."""
    secrets = [webhook.secret]
    if webhook.previous_secret and (
        webhook.previous_secret_expires and webhook.previous_secret_expires > now
    ):
        secrets.append(webhook.previous_secret)
    return secrets


def event_body(event: WebhookEvent, entity: Any) -> dict[str, Any]:
    """What every delivery of ``event`` carries, and the event feed too."""
    return {
        "id": event.id,
        "topic": event.topic,
        "type": event.topic,
        "timestamp": isoformat(event.created),
        "ckan": tk.config.get("ckan.site_url"),
        "entity_type": event.entity_type,
        "entity": entity,
    }


def render(
    event: WebhookEvent, webhook: Webhook, entity: Any
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``event`` for ``webhook``, ``entity`` as shown."""
    payload = event_body(event, entity)
    payload["sequence"] = event.sequence
    payload["webhook_id"] = webhook.id
    plugins = list(p.PluginImplementations(IWebhooks))
    if plugins:
        view = webhook_dictize(webhook)
        for plugin in plugins:
            payload = plugin.webhook_payload(payload, event.topic, view)
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
    if webhook.verified_at is not None:
        # CloudEvents abuse protection: the origin the receiver consented to.
        headers["Origin"] = cfg.site_origin()
    return body, headers
