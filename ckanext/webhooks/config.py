"""Typed access to the options declared in config_declaration.yaml."""

from __future__ import annotations

import ckan.plugins.toolkit as tk

__all__ = [
    "allow_private_addresses",
    "allowed_hosts",
    "concurrency",
    "delete_disabled_after_days",
    "delivery_log_days",
    "max_failures",
    "max_response_bytes",
    "max_webhooks_per_address",
    "max_webhooks_per_user",
    "minimum_auth",
    "publishers",
    "queue",
    "retry_schedule",
    "secret_rotation_hours",
    "timeout",
]


def minimum_auth() -> str:
    return tk.config.get("ckanext.webhooks.minimum_auth")


def timeout() -> float:
    return float(tk.config.get("ckanext.webhooks.timeout"))


def concurrency() -> int:
    return max(1, tk.config.get("ckanext.webhooks.concurrency"))


def queue() -> str:
    return tk.config.get("ckanext.webhooks.queue")


def retry_schedule() -> list[float]:
    value = tk.config.get("ckanext.webhooks.retry_schedule")
    if isinstance(value, str):
        value = value.split()
    return [float(v) for v in value]


def max_failures() -> int:
    return tk.config.get("ckanext.webhooks.max_failures")


def delivery_log_days() -> int:
    return tk.config.get("ckanext.webhooks.delivery_log_days")


def delete_disabled_after_days() -> int:
    return tk.config.get("ckanext.webhooks.delete_disabled_after_days")


def allow_private_addresses() -> bool:
    return tk.config.get("ckanext.webhooks.allow_private_addresses")


def allowed_hosts() -> list[str]:
    value = tk.config.get("ckanext.webhooks.allowed_hosts")
    if isinstance(value, str):
        value = value.split()
    return list(value or [])


def max_response_bytes() -> int:
    return tk.config.get("ckanext.webhooks.max_response_bytes")


def max_webhooks_per_user() -> int:
    return tk.config.get("ckanext.webhooks.max_webhooks_per_user")


def max_webhooks_per_address() -> int:
    return tk.config.get("ckanext.webhooks.max_webhooks_per_address")


def secret_rotation_hours() -> int:
    return tk.config.get("ckanext.webhooks.secret_rotation_hours")


def publishers() -> list[str]:
    value = tk.config.get("ckanext.webhooks.publishers")
    if isinstance(value, str):
        value = value.split()
    return list(value or [])
