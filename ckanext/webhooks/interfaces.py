"""IWebhooks: how other CKAN extensions add topics and shape payloads."""

from __future__ import annotations

from typing import Any

from ckan.plugins.interfaces import Interface

__all__ = ["IWebhooks"]


class IWebhooks(Interface):
    """Implement this in your plugin to publish events of your own.

    Publish them with ``ckanext.webhooks.publish(topic, data)`` inside the
    transaction that makes the change (they are sent only if it commits), or
    with the ``webhook_event_publish`` action.
    """

    def webhook_topics(self) -> list[str]:
        """Topics this plugin publishes, e.g. ``["harvest/finished"]``.

        They are listed by ``webhook_topic_list`` and in the web form, and
        webhooks may subscribe to them (and to ``harvest/*``).
        """
        return []

    def webhook_payload(
        self, payload: dict[str, Any], topic: str, webhook: dict[str, Any]
    ) -> dict[str, Any]:
        """Change the JSON body of any topic before it is signed and sent.

        ``payload`` is the body described in docs/topics.rst, ``webhook`` the
        receiving webhook as ``webhook_show`` returns it, without its secret.
        Return the payload to send (like django-rest-hooks' serialize_hook).
        """
        return payload
