"""Ceilings on how fast CKAN sends: per receiver host, and per webhook.

Without the first, many webhooks pointed at one third party turn one public
edit into a flood of POSTs at it; the second is the rate a receiver allowed
(``WebHook-Allowed-Rate``) or its owner set (``rate_limit``). Sending slots
are booked in Redis, so each ceiling holds across all workers together: each
host or webhook has a "theoretical arrival time" (the next free slot, as in
the generic cell rate algorithm), and a worker books slots up to ``HORIZON``
seconds ahead. Deliveries without a slot go back to the queue, due when the
next slot frees: they wait, never dropped.
"""

from __future__ import annotations

import logging
import time

import ckan.plugins.toolkit as tk

__all__ = ["HORIZON", "HostThrottle", "WebhookThrottle"]

log = logging.getLogger(__name__)

HORIZON = 1.0  # seconds ahead a worker may book sending slots

# KEYS[1]: the host's key. ARGV: microseconds between sends, the horizon in
# microseconds, slots wanted. Returns the microseconds until the next free
# slot after the booking, then the delay of each booked slot.
_BOOK = """
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local booked = {}
while #booked < wanted and tat - now < horizon do
  booked[#booked + 1] = tat - now
  tat = tat + interval
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
           math.floor((tat - now) / 1000) + 60000)
local result = {tat - now}
for _, delay in ipairs(booked) do result[#result + 1] = delay end
return result
"""


class _Slots:
    """Books sending slots in Redis under keys of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._script = None
        self._warned_at = 0.0

    def _book(
        self, name: str, wanted: int, per_second: float
    ) -> tuple[list[float], float]:
        """Delays (seconds from now) of the slots booked for up to ``wanted``
        sends, and the wait until the next free slot for the rest."""
        if not per_second or wanted <= 0:
            return [0.0] * wanted, 0.0
        try:
            reply = self._booker()(
                keys=[self._key(name)],
                args=[int(1_000_000 / per_second), int(HORIZON * 1_000_000), wanted],
            )
        except Exception as error:
            # Deliveries must not stop with Redis: fail open, loudly.
            self._warn(error)
            return [0.0] * wanted, 0.0
        next_free, *delays = (int(value) / 1_000_000 for value in reply)
        return delays, next_free

    def _booker(self):  # a redis-py Script, registered once per throttle
        if self._script is None:
            from ckan.lib.redis import connect_to_redis

            self._script = connect_to_redis().register_script(_BOOK)
        return self._script

    def _key(self, name: str) -> str:
        return f"ckanext-webhooks:{tk.config.get('ckan.site_id')}:{self.kind}:{name}"

    def _warn(self, error: Exception) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("webhooks: %s not enforced (%s)", self.kind, error)


class HostThrottle(_Slots):
    """Books sending slots per receiver host; ``rate`` per second, 0 = no limit."""

    def __init__(self, rate: float) -> None:
        super().__init__("rate")
        self.rate = rate

    def book(self, host: str, wanted: int) -> tuple[list[float], float]:
        return self._book(host, wanted, self.rate)


class WebhookThrottle(_Slots):
    """Books sending slots per webhook, at its own rate per minute."""

    def __init__(self) -> None:
        super().__init__("webhook-rate")

    def book(
        self, webhook_id: str, wanted: int, per_minute: int | None
    ) -> tuple[list[float], float]:
        return self._book(webhook_id, wanted, (per_minute or 0) / 60)
