"""The topics a webhook can subscribe to, and how an event's topic matches them."""

from __future__ import annotations

__all__ = [
    "DATASET_TOPICS",
    "PING",
    "RESOURCE_TOPICS",
    "TOPICS",
    "WILDCARDS",
    "matching_subscriptions",
    "subscribable_topics",
]

DATASET_TOPICS = ("dataset/create", "dataset/update", "dataset/delete")
RESOURCE_TOPICS = ("resource/create", "resource/update", "resource/delete")
TOPICS = DATASET_TOPICS + RESOURCE_TOPICS
WILDCARDS = ("dataset/*", "resource/*", "*")
PING = "webhook/ping"


def subscribable_topics() -> list[str]:
    return [*TOPICS, *WILDCARDS]


def matching_subscriptions(topic: str) -> list[str]:
    """The subscription topics that receive an event of ``topic``."""
    kind = topic.split("/", 1)[0]
    return [topic, f"{kind}/*", "*"]
