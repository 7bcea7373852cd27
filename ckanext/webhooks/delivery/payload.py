"""What is sent: the JSON body of a delivery and its signed headers.

Bodies follow the payload documented in docs/topics.rst; headers follow
Standard Webhooks (``webhook-id`` is the event id, the same on every retry
and redelivery, so receivers can de-duplicate).

The deliveries of one event to one class of readers differ only in
``webhook_id``, so the body is serialised once (``Template``) and each
delivery's id spliced into it: the same bytes ``json.dumps`` would give, at a
fraction of the cost. Not when an ``IWebhooks`` plugin may shape each
webhook's payload: then ``render`` serialises each delivery on its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from typing import Any

import ckan.plugins as p
import ckan.plugins.toolkit as tk

from ckanext.webhooks import __version__, signing
from ckanext.webhooks.interfaces import IWebhooks
from ckanext.webhooks.logic.dictization import webhook_dictize
from ckanext.webhooks.model import Webhook, WebhookEvent, utcnow
from ckanext.webhooks.vocabulary import isoformat

__all__ = ["Template", "render", "render_spliced", "signing_secrets"]

# Stands in for the webhook id while a template is serialised: json.dumps
# writes it as "\u0000...", which no id ever is.
_MARK = "\x00ckanext-webhooks:webhook_id\x00"
_MARK_JSON = json.dumps(_MARK).encode()


def signing_secrets(webhook: Webhook, now: datetime.datetime) -> list[str]:
    """The current secret, and the previous one while a rotation overlaps."""
    secrets = [webhook.secret]
    if webhook.previous_secret and (
        webhook.previous_secret_expires and webhook.previous_secret_expires > now
    ):
        secrets.append(webhook.previous_secret)
    return secrets


def _payload(event: WebhookEvent, webhook_id: str, entity: Any) -> dict[str, Any]:
    return {
        "id": event.id,
        "topic": event.topic,
        "type": event.topic,
        "timestamp": isoformat(event.created),
        "sequence": event.sequence,
        "webhook_id": webhook_id,
        "ckan": tk.config.get("ckan.site_url"),
        "entity_type": event.entity_type,
        "entity": entity,
    }


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


@dataclasses.dataclass(frozen=True)
class Template:
    """An event's body with ``entity``, cut where the webhook id goes."""

    entity: Any  # kept: callers key templates by the entity's identity
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, event: WebhookEvent, entity: Any) -> Template | None:
        """None if the body cannot be cut in one place (the entity holds
        the mark itself): its deliveries are then rendered one by one."""
        head, mark, tail = _dumps(_payload(event, _MARK, entity)).partition(_MARK_JSON)
        if not mark or _MARK_JSON in tail:
            return None
        return cls(entity, head, tail)

    def body(self, webhook_id: str) -> bytes:
        return self.head + json.dumps(webhook_id).encode() + self.tail


def render(
    event: WebhookEvent, webhook: Webhook, entity: Any
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``event`` for ``webhook``, ``entity`` as shown."""
    payload = _payload(event, webhook.id, entity)
    plugins = list(p.PluginImplementations(IWebhooks))
    if plugins:
        view = webhook_dictize(webhook)
        for plugin in plugins:
            payload = plugin.webhook_payload(payload, event.topic, view)
    body = _dumps(payload)
    return body, _signed_headers(event, webhook, body)


def render_spliced(
    event: WebhookEvent, webhook: Webhook, template: Template
) -> tuple[bytes, dict[str, str]]:
    """``render`` without plugins, the body spliced from ``event``'s template."""
    body = template.body(webhook.id)
    return body, _signed_headers(event, webhook, body)


def _signed_headers(
    event: WebhookEvent, webhook: Webhook, body: bytes
) -> dict[str, str]:
    now = int(time.time())
    return {
        "Content-Type": "application/json",
        "User-Agent": f"ckanext-webhooks/{__version__}",
        "webhook-id": event.id,
        "webhook-timestamp": str(now),
        "webhook-signature": signing.signature_header(
            signing_secrets(webhook, utcnow()), event.id, now, body
        ),
    }
