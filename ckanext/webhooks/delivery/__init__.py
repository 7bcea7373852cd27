"""Delivery: from outbox rows to signed HTTP POSTs, with retries.

The database is the queue, and one event flows one way through these modules:

- ``outbox``: new events become one delivery per matching webhook;
- ``claiming``: due deliveries are claimed with a lease (how work is claimed);
- ``visibility``: who may see this event, at sending time;
- ``payload`` and ``rendering``: what is sent, signed;
- ``throttle``: how fast one receiver host may be sent to;
- ``loop``: the steps in order, with the I/O on a thread pool;
- ``outcomes`` and ``health``: what an outcome does to the delivery and to
  the webhook;
- ``queue``: the RQ job and the wake-ups; ``ping``: one synchronous send.
"""

from ckanext.webhooks.delivery.outbox import expand_events
from ckanext.webhooks.delivery.ping import ping
from ckanext.webhooks.delivery.queue import (
    deliver_pending,
    dispatch,
    pending_work,
    wake_key,
    wake_workers,
)

__all__ = [
    "deliver_pending",
    "dispatch",
    "expand_events",
    "pending_work",
    "ping",
    "wake_key",
    "wake_workers",
]
