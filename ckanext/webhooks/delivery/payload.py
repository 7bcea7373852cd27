"""What is sent: the JSON body of a delivery and its signed headers.

Bodies follow the payload documented in docs/topics.rst; headers follow
Standard Webhooks (``webhook-id`` is the event id, the same on every retry
and redelivery, so receivers can de-duplicate).

The deliveries of one event to one class of readers differ only in
``sequence`` and ``webhook_id``, so the body is serialised once (``Template``)
and each delivery's two values spliced into it: the same bytes ``json.dumps``
would give, at a fraction of the cost. Not when an ``IWebhooks`` plugin may
shape each webhook's payload: then ``render`` serialises each delivery on its
own. ``event_body`` is what is left without them: the event feed's items.
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
from ckanext.webhooks import config as cfg
from ckanext.webhooks.interfaces import IWebhooks
from ckanext.webhooks.logic.dictization import webhook_dictize
from ckanext.webhooks.model import Webhook, WebhookEvent, utcnow
from ckanext.webhooks.vocabulary import DATA_CHANGED, isoformat

__all__ = [
    "CHANGE_TOPICS",
    "Shape",
    "Template",
    "event_body",
    "render",
    "render_spliced",
    "signing_secrets",
]

# Topics whose payloads list the top-level fields that changed.
CHANGE_TOPICS = frozenset({"dataset/update", "resource/update", DATA_CHANGED})

# Stand in for the sequence and the webhook id while a template is
# serialised: json.dumps writes them as "\u0000...", which no value ever is.
_SEQUENCE_MARK = "\x00ckanext-webhooks:sequence\x00"
_MARK = "\x00ckanext-webhooks:webhook_id\x00"
_SEQUENCE_MARK_JSON = json.dumps(_SEQUENCE_MARK).encode()
_MARK_JSON = json.dumps(_MARK).encode()


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
    body = {
        "id": event.id,
        "topic": event.topic,
        "type": event.topic,
        "timestamp": isoformat(event.created),
        "ckan": tk.config.get("ckan.site_url"),
        "entity_type": event.entity_type,
        "entity": entity,
    }
    if event.topic in CHANGE_TOPICS:
        body["changes"] = event.changes
    return body


@dataclasses.dataclass(frozen=True)
class Shape:
    """What one delivery adds to its event's body: whether the dataset
    entered, left or stayed in the webhook's filter, and how many updates it
    stands for (``coalesced`` above 1 with the union of their ``changes``)."""

    filter: str | None = None
    coalesced: int = 1
    changes: list[str] | None = None
    # The subscriber may no longer read the dataset: of what changed it
    # learns only that it became private.
    withheld: bool = False

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.filter is not None:
            payload["filter"] = self.filter
        if self.coalesced > 1:
            payload["coalesced"] = self.coalesced
            payload["changes"] = self.changes
        if self.withheld and "changes" in payload:
            payload["changes"] = ["private"]
        return payload


def _payload(
    event: WebhookEvent,
    webhook_id: str,
    sequence: Any,
    entity: Any,
    shape: Shape = Shape(),
) -> dict[str, Any]:
    """The body of one delivery: ``sequence`` is the webhook's own count
    (``delivery/sequencing.py``), null for a ping."""
    shared = event_body(event, entity)
    first = {key: shared[key] for key in ("id", "topic", "type", "timestamp")}
    return shape.apply(
        {**first, "sequence": sequence, "webhook_id": webhook_id, **shared}
    )


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


@dataclasses.dataclass(frozen=True)
class Template:
    """An event's body with ``entity``, cut where the sequence and the
    webhook id go."""

    entity: Any  # kept: callers key templates by the entity's identity
    head: bytes
    middle: bytes
    tail: bytes

    @classmethod
    def of(
        cls, event: WebhookEvent, entity: Any, shape: Shape = Shape()
    ) -> Template | None:
        """None if the body cannot be cut in one place each (the entity holds
        a mark itself): its deliveries are then rendered one by one."""
        whole = _dumps(_payload(event, _MARK, _SEQUENCE_MARK, entity, shape))
        head, found, rest = whole.partition(_SEQUENCE_MARK_JSON)
        middle, mark, tail = rest.partition(_MARK_JSON)
        if not (found and mark) or _MARK_JSON in tail or _SEQUENCE_MARK_JSON in rest:
            return None
        return cls(entity, head, middle, tail)

    def body(self, webhook_id: str, sequence: int | None) -> bytes:
        number = b"null" if sequence is None else str(int(sequence)).encode()
        webhook = json.dumps(webhook_id).encode()
        return self.head + number + self.middle + webhook + self.tail


def render(
    event: WebhookEvent,
    webhook: Webhook,
    entity: Any,
    sequence: int | None,
    shape: Shape = Shape(),
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``event`` for ``webhook``, ``entity`` as shown."""
    payload = _payload(event, webhook.id, sequence, entity, shape)
    plugins = list(p.PluginImplementations(IWebhooks))
    if plugins:
        view = webhook_dictize(webhook)
        for plugin in plugins:
            payload = plugin.webhook_payload(payload, event.topic, view)
    body = _dumps(payload)
    return body, _signed_headers(event, webhook, body)


def render_spliced(
    event: WebhookEvent, webhook: Webhook, template: Template, sequence: int | None
) -> tuple[bytes, dict[str, str]]:
    """``render`` without plugins, the body spliced from ``event``'s template."""
    body = template.body(webhook.id, sequence)
    return body, _signed_headers(event, webhook, body)


def _signed_headers(
    event: WebhookEvent, webhook: Webhook, body: bytes
) -> dict[str, str]:
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
    return headers
