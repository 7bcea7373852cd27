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

A webhook chooses its ``Shape``: a ``thin`` payload's ``entity`` is only the
identity of what changed and the API URL to fetch it (``thin_entity``), and
the ``cloudevents`` format wraps the body in a CloudEvents 1.0 envelope
(``cloudevent``). A template is made per (event, view, shape), so one shape's
bytes never reach a webhook of another. Every format is signed the same way,
with the webhook's secret (``v1``) and the site's keys, if any (``v1a``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from typing import Any
from urllib.parse import urlencode

import ckan.plugins as p
import ckan.plugins.toolkit as tk

from ckanext.webhooks import __version__, signing, signing_keys
from ckanext.webhooks import config as cfg
from ckanext.webhooks.interfaces import IWebhooks
from ckanext.webhooks.logic.dictization import webhook_dictize
from ckanext.webhooks.model import Webhook, WebhookEvent, utcnow
from ckanext.webhooks.vocabulary import (
    DATA_CHANGED,
    PayloadFormat,
    PayloadKind,
    isoformat,
)

__all__ = [
    "CHANGE_TOPICS",
    "CLOUDEVENTS_CONTENT_TYPE",
    "Extras",
    "Shape",
    "Template",
    "cloudevent",
    "cloudevents_type",
    "event_body",
    "render",
    "render_spliced",
    "shape_of",
    "signing_secrets",
    "thin_entity",
]

# (payload, format) of a webhook: what its body carries and how it is wrapped.
Shape = tuple[str, str]
DEFAULT_SHAPE: Shape = (PayloadKind.FULL.value, PayloadFormat.STANDARD.value)
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
CLOUDEVENTS_TYPE_PREFIX = "org.ckan."
# Topics whose payloads list the top-level fields that changed.
CHANGE_TOPICS = frozenset({"dataset/update", "resource/update", DATA_CHANGED})
# Where a thin payload's receiver fetches the entity, with its own rights.
FETCH_ACTIONS = {
    "dataset": "package_show",
    "resource": "resource_show",
    "organization": "organization_show",
    "group": "group_show",
}

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
class Extras:
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


NO_EXTRAS = Extras()


def _payload(
    event: WebhookEvent,
    webhook_id: str,
    sequence: Any,
    entity: Any,
    extras: Extras = NO_EXTRAS,
) -> dict[str, Any]:
    """The body of one delivery: ``sequence`` is the webhook's own count
    (``delivery/sequencing.py``), null for a ping."""
    shared = event_body(event, entity)
    first = {key: shared[key] for key in ("id", "topic", "type", "timestamp")}
    return extras.apply(
        {**first, "sequence": sequence, "webhook_id": webhook_id, **shared}
    )


def shape_of(webhook: Webhook) -> Shape:
    return (
        webhook.payload or PayloadKind.FULL.value,
        webhook.format or PayloadFormat.STANDARD.value,
    )


def thin_entity(event: WebhookEvent, entity: Any) -> Any:
    """Only the identity of what changed, and the API URL to fetch it.

    Pings and custom events have nothing to fetch through the API: their
    entity goes as it is.
    """
    action = FETCH_ACTIONS.get(event.entity_type)
    if action is None:
        return entity
    in_dataset = event.entity_type in ("dataset", "resource")
    site = (tk.config.get("ckan.site_url") or "").rstrip("/")
    return {
        "id": event.entity_id,
        "name": entity.get("name") if isinstance(entity, dict) else None,
        "type": event.entity_type,
        "dataset": event.package_id if event.entity_type == "resource" else None,
        "organization": event.organization_id if in_dataset else None,
        "url": f"{site}/api/action/{action}?{urlencode({'id': event.entity_id})}",
    }


def cloudevents_type(topic: str) -> str:
    """``dataset/update`` -> ``org.ckan.dataset.update`` (reverse-DNS, dots)."""
    return CLOUDEVENTS_TYPE_PREFIX + topic.replace("/", ".")


# What a CloudEvent's envelope says instead of its data (``ckan``: ``source``).
_ENVELOPED = frozenset({"id", "type", "timestamp", "ckan"})


def cloudevent(event: WebhookEvent, body: dict[str, Any]) -> dict[str, Any]:
    """The standard ``body`` as a CloudEvents 1.0 structured-mode event: the
    envelope says what the body's id, type and timestamp said."""
    data = {key: value for key, value in body.items() if key not in _ENVELOPED}
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": tk.config.get("ckan.site_url"),
        "type": cloudevents_type(event.topic),
        "time": isoformat(event.created),
        "subject": f"{event.entity_type}/{event.entity_id}",
        "datacontenttype": "application/json",
        "data": data,
    }


def _shaped(
    event: WebhookEvent,
    webhook_id: str,
    sequence: Any,
    entity: Any,
    shape: Shape,
    extras: Extras = NO_EXTRAS,
) -> dict[str, Any]:
    kind, wrapping = shape
    if kind == PayloadKind.THIN.value:
        entity = thin_entity(event, entity)
    body = _payload(event, webhook_id, sequence, entity, extras)
    if wrapping == PayloadFormat.CLOUDEVENTS.value:
        return cloudevent(event, body)
    return body


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
        cls,
        event: WebhookEvent,
        entity: Any,
        shape: Shape = DEFAULT_SHAPE,
        extras: Extras = NO_EXTRAS,
    ) -> Template | None:
        """None if the body cannot be cut in one place each (the entity holds
        a mark itself): its deliveries are then rendered one by one."""
        whole = _dumps(_shaped(event, _MARK, _SEQUENCE_MARK, entity, shape, extras))
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
    extras: Extras = NO_EXTRAS,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``event`` for ``webhook``, ``entity`` as shown."""
    payload = _shaped(event, webhook.id, sequence, entity, shape_of(webhook), extras)
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
    signatures = [
        signing.signature_header(
            signing_secrets(webhook, utcnow()), event.id, now, body
        ),
        *signing_keys.signature_values(cfg.signing_keys(), event.id, now, body),
    ]
    cloudevents = webhook.format == PayloadFormat.CLOUDEVENTS.value
    # The receiver's gateway headers first: names that would clash with
    # these are refused when they are set (logic/validators.py).
    headers = {
        **webhook.custom_headers,
        "Content-Type": (
            CLOUDEVENTS_CONTENT_TYPE if cloudevents else "application/json"
        ),
        "User-Agent": f"ckanext-webhooks/{__version__}",
        "webhook-id": event.id,
        "webhook-timestamp": str(now),
        "webhook-signature": " ".join(signatures),
    }
    if webhook.verified_at is not None:
        # CloudEvents abuse protection: the origin the receiver consented to.
        headers["Origin"] = cfg.site_origin()
    return headers
