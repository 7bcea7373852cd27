"""The topics a webhook can subscribe to, and how an event's topic matches them."""

from __future__ import annotations

import re

import ckan.plugins as p

from ckanext.webhooks.vocabulary import CUSTOM_PREFIX, PING, TOPICS

__all__ = [
    "TOPIC_PATTERN",
    "is_publishable",
    "is_subscribable",
    "plugin_topics",
    "subscribable_topics",
    "subscriptions_sql",
    "unreachable_by_filter",
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


def subscriptions_sql(topic: str) -> str:
    """The subscription topics that receive an event of ``topic`` (an SQL
    text expression), as an SQL array: the topic, its kind's wildcard, ``*``."""
    return f"ARRAY[{topic}, split_part({topic}, '/', 1) || '/*', '*']"


def unreachable_by_filter(
    topic: str, dataset: str | None, organization: str | None
) -> str | None:
    """Why a subscription to ``topic`` with these filters could never
    receive anything, or None if it can.

    Group events concern no dataset nor organization; organization events
    concern no dataset (their organization is the organization itself).
    """
    kind = topic.split("/", 1)[0]
    if kind == "group" and (dataset or organization):
        return "Group events concern no dataset or organization: remove the filter"
    if kind == "organization" and dataset:
        return (
            "Organization events concern no dataset: filter by organization "
            "instead, or remove the dataset"
        )
    return None
