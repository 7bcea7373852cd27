"""The topics a webhook can subscribe to, and how an event's topic matches them."""

from __future__ import annotations

import re

import ckan.plugins as p

from ckanext.webhooks.vocabulary import CUSTOM_PREFIX, PING, TOPICS

__all__ = [
    "TOPIC_PATTERN",
    "is_publishable",
    "is_subscribable",
    "matching_subscriptions",
    "plugin_topics",
    "subscribable_topics",
]

# A topic is "kind/name" in lower case; custom names may have more levels.
TOPIC_PATTERN = re.compile(r"[a-z0-9_.-]+(/[a-z0-9_.-]+)+")


def plugin_topics() -> list[str]:
    from ckanext.webhooks.interfaces import IWebhooks

    found: list[str] = []
    for plugin in p.PluginImplementations(IWebhooks):
        for topic in plugin.webhook_topics():
            if TOPIC_PATTERN.fullmatch(topic) and topic not in found:
                found.append(topic)
    return found


def _wildcards(topics: list[str]) -> list[str]:
    kinds = []
    for topic in topics:
        wildcard = topic.split("/", 1)[0] + "/*"
        if wildcard not in kinds:
            kinds.append(wildcard)
    return kinds


def subscribable_topics() -> list[str]:
    """Every topic and wildcard, for listing. ``custom/<name>`` is open too."""
    named = [*TOPICS, *plugin_topics()]
    return [*named, *_wildcards(named), f"{CUSTOM_PREFIX}*", "*"]


def is_subscribable(topic: str) -> bool:
    if topic in subscribable_topics():
        return True
    return topic.startswith(CUSTOM_PREFIX) and bool(TOPIC_PATTERN.fullmatch(topic))


def is_publishable(topic: str) -> bool:
    """Topics that may be published as custom events (not the built-in ones)."""
    if "*" in topic or topic in TOPICS or topic == PING:
        return False
    if topic.startswith(CUSTOM_PREFIX):
        return bool(TOPIC_PATTERN.fullmatch(topic))
    return topic in plugin_topics()


def matching_subscriptions(topic: str) -> list[str]:
    """The subscription topics that receive an event of ``topic``."""
    kind = topic.split("/", 1)[0]
    return [topic, f"{kind}/*", "*"]
