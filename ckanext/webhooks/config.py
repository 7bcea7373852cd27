"""Typed access to the options declared in config_declaration.yaml.

The declaration is the only source of each option's type, default and
validation: values are read through it (``Option.normalize``), so a value set
at run time (tests, ``ckan config-tool``) is typed exactly like one read from
the ini file.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

import ckan.plugins.toolkit as tk
from ckan.common import config_declaration

from ckanext.webhooks import signing_keys as keys
from ckanext.webhooks.http import Policy

__all__ = [
    "address_policy",
    "anonymous_lease_days",
    "concurrency",
    "delete_disabled_after_days",
    "delivery_log_days",
    "linger_seconds",
    "max_failures",
    "max_logged_request_bytes",
    "max_rate_per_host",
    "max_response_bytes",
    "max_tests_per_minute",
    "max_webhooks_per_address",
    "max_webhooks_per_user",
    "metrics_token",
    "minimum_auth",
    "owner_notice_minutes",
    "publishers",
    "queue",
    "render_per_owner",
    "retry_schedule",
    "secret_rotation_hours",
    "signing_keys",
    "site_origin",
    "timeout",
    "verification",
    "verification_hours",
    "wake_in_background",
]

PREFIX = "ckanext.webhooks."


def _option(name: str) -> Any:
    key = PREFIX + name
    raw = tk.config.get(key)
    try:
        value = _normalized(key, raw)
    except TypeError:  # unhashable: a list or dict set at run time
        return config_declaration[key].normalize(raw)
    # The cached value is shared: a caller gets its own copy of a container.
    return type(value)(value) if isinstance(value, (list, dict, set)) else value


@functools.lru_cache(maxsize=512)
def _normalized(key: str, raw: Any) -> Any:
    """Normalizing runs CKAN's validators (about 10 µs; some options are
    read on every change): once per option and raw value, which is all the
    result depends on."""
    return config_declaration[key].normalize(raw)


def minimum_auth() -> str:
    return _option("minimum_auth")


def timeout() -> float:
    return _option("timeout")


def concurrency() -> int:
    return max(1, _option("concurrency"))


def queue() -> str:
    return _option("queue")


def render_per_owner() -> bool:
    return _option("render_per_owner")


def retry_schedule() -> list[float]:
    return [float(delay) for delay in _option("retry_schedule")]


def linger_seconds() -> int:
    return _option("linger_seconds")


def wake_in_background() -> bool:
    return _option("wake_in_background")


def max_failures() -> int:
    return _option("max_failures")


def delivery_log_days() -> int:
    return _option("delivery_log_days")


def delete_disabled_after_days() -> int:
    return _option("delete_disabled_after_days")


def address_policy() -> Policy:
    """Which receivers are allowed: the one place the policy is built."""
    return Policy.from_entries(
        _option("allow_private_addresses"), _option("allowed_hosts")
    )


def max_response_bytes() -> int:
    return _option("max_response_bytes")


def max_logged_request_bytes() -> int:
    return max(0, _option("max_logged_request_bytes"))


def max_webhooks_per_user() -> int:
    return _option("max_webhooks_per_user")


def max_webhooks_per_address() -> int:
    return _option("max_webhooks_per_address")


def max_rate_per_host() -> int:
    return _option("max_rate_per_host")


def max_tests_per_minute() -> int:
    return _option("max_tests_per_minute")


def secret_rotation_hours() -> int:
    return _option("secret_rotation_hours")


def signing_keys() -> tuple[keys.SigningKey, ...]:
    """The site's ed25519 keys (none: no ``v1a`` signature); a bad entry
    raises ``signing_keys.BadSigningKey``, which names it without its value.

    Read for every delivery: without keys, it costs one lookup."""
    if not tk.config.get(PREFIX + "signing_keys"):
        return ()
    return keys.parse(tuple(_option("signing_keys")))


def publishers() -> list[str]:
    return _option("publishers")


def verification() -> str:
    return _option("verification")


def verification_hours() -> int:
    return _option("verification_hours")


def anonymous_lease_days() -> int:
    return _option("anonymous_lease_days")


def coalesce_seconds() -> int:
    return max(0, _option("coalesce_seconds"))


def metrics_token() -> str:
    return _option("metrics_token") or ""


def owner_notice_minutes() -> int:
    return _option("owner_notice_minutes")


def site_origin() -> str:
    """The site's host (and port, if any) from ``ckan.site_url``: what the
    consent handshake names as ``WebHook-Request-Origin``."""
    return urlsplit(tk.config.get("ckan.site_url") or "").netloc.lower()
