"""Standard Webhooks signatures (https://www.standardwebhooks.com/)."""

from __future__ import annotations

import base64
import hmac

from ckanext.webhooks.vocabulary import SECRET_PREFIX

__all__ = ["sign", "signature_header"]


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` value: HMAC-SHA256 over ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.digest(_key(secret), signed, "sha256")  # one call, in C
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets: list[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """Space-separated signatures, one per secret (several during rotation)."""
    return " ".join(sign(s, message_id, timestamp, body) for s in secrets)
