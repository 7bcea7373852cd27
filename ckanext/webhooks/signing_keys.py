"""The site's ed25519 keys: Standard Webhooks ``v1a`` signatures anyone can verify.

An HMAC secret (``signing.py``) proves a delivery to whoever holds it, so
each subscriber must keep one safe; on an open portal with anonymous
subscribers nobody controls both ends. With ``ckanext.webhooks.signing_keys``
set, every delivery is also signed with the site's ed25519 key(s), and the
public keys are published (``webhook_signing_keys``,
``/.well-known/webhooks/keys.json``): a receiver verifies with them alone.

Keys are written as the Standard Webhooks spec says: ``whsk_`` and the base64
of the secret key, ``whpk_`` and the base64 of the 32-byte public key. A
secret key is read either as libsodium writes it (64 bytes: the seed, then
the public key, which must match) or as the bare 32-byte seed;
``generate`` writes the 64-byte form. Several keys sign side by side, so a
key is rotated by adding the new one, then removing the old one once
receivers trust the new one. A secret key is never logged, shown or put in
an error message: a bad entry is named by its position.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ckanext.webhooks.vocabulary import PUBLIC_KEY_PREFIX, SIGNING_KEY_PREFIX

__all__ = ["BadSigningKey", "SigningKey", "generate", "parse", "signature_values"]

OPTION = "ckanext.webhooks.signing_keys"
SEED_BYTES = 32
KEYPAIR_BYTES = 64


class BadSigningKey(ValueError):
    """An entry of the option is not a usable secret key (said without it)."""


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """One of the site's keys: signs, and says what to publish."""

    private: Ed25519PrivateKey = dataclasses.field(repr=False)
    public_raw: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(private, raw)

    @property
    def public_key(self) -> str:
        """``whpk_...``: what receivers verify with."""
        return PUBLIC_KEY_PREFIX + base64.b64encode(self.public_raw).decode()

    @property
    def key_id(self) -> str:
        """A short name for the key: the start of its public key's SHA-256."""
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    @property
    def secret_key(self) -> str:
        """``whsk_...`` in the 64-byte form (seed, then public key)."""
        seed = self.private.private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return SIGNING_KEY_PREFIX + base64.b64encode(seed + self.public_raw).decode()

    def sign(self, message_id: str, timestamp: int, body: bytes) -> str:
        """One ``v1a,<base64>`` value over ``id.timestamp.body``."""
        signed = f"{message_id}.{timestamp}.".encode() + body
        return "v1a," + base64.b64encode(self.private.sign(signed)).decode()

    def published(self) -> dict[str, str]:
        return {
            "id": self.key_id,
            "public_key": self.public_key,
            "algorithm": "ed25519",
            "signature": "v1a",
        }


def generate() -> SigningKey:
    """A new key from the OS's CSPRNG."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return SigningKey(private, raw)


@functools.lru_cache(maxsize=8)
def parse(entries: tuple[str, ...]) -> tuple[SigningKey, ...]:
    """The keys of the option's entries, in order; BadSigningKey names the
    first bad entry by its position."""
    keys: list[SigningKey] = []
    for position, entry in enumerate(entries, 1):
        key = _decode(position, entry)
        if any(k.public_raw == key.public_raw for k in keys):
            raise BadSigningKey(f"entry {position} of {OPTION} repeats an earlier key")
        keys.append(key)
    return tuple(keys)


def _decode(position: int, entry: str) -> SigningKey:
    where = f"entry {position} of {OPTION}"
    if entry.startswith(PUBLIC_KEY_PREFIX):
        raise BadSigningKey(
            f"{where} is a public key ({PUBLIC_KEY_PREFIX}...): give the secret "
            f"key ({SIGNING_KEY_PREFIX}...) that `ckan webhooks keygen` prints"
        )
    if not entry.startswith(SIGNING_KEY_PREFIX):
        raise BadSigningKey(
            f"{where} does not start with {SIGNING_KEY_PREFIX}: give a key that "
            "`ckan webhooks keygen` prints"
        )
    try:
        raw = base64.b64decode(entry.removeprefix(SIGNING_KEY_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise BadSigningKey(f"{where} is not valid base64") from None
    if len(raw) not in (SEED_BYTES, KEYPAIR_BYTES):
        raise BadSigningKey(
            f"{where} holds {len(raw)} bytes: an ed25519 secret key has "
            f"{KEYPAIR_BYTES} (seed and public key) or {SEED_BYTES} (seed)"
        )
    key = SigningKey.from_seed(raw[:SEED_BYTES])
    if len(raw) == KEYPAIR_BYTES and raw[SEED_BYTES:] != key.public_raw:
        raise BadSigningKey(f"{where}: its public half does not match its seed")
    return key


def signature_values(
    keys: tuple[SigningKey, ...], message_id: str, timestamp: int, body: bytes
) -> list[str]:
    """One ``v1a`` value per key, in the option's order."""
    return [key.sign(message_id, timestamp, body) for key in keys]
