"""Kept-alive connections, bounded: a few per receiver, for a few receivers.

Webhooks pointed at many different hosts must not make a worker hold an
unbounded number of open sockets, so idle connections are kept ``size`` per
(scheme, address, port, host name), for at most ``max_pools`` of them, and
``shrink_to`` closes idle ones to make room for new ones; the least recently
used pool goes first. Used from the event loop only.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from typing import TypeVar

from ckanext.webhooks.http.wire import Head, read_head

__all__ = ["Connection", "PoolKey", "Pools", "recall", "remember"]

K = TypeVar("K")
V = TypeVar("V")
PoolKey = tuple[str, str, int, str]  # scheme, address, port, host name


def recall(cache: OrderedDict[K, V], key: K) -> V | None:
    """The value for ``key``, which becomes the most recent; None if absent."""
    if (value := cache.get(key)) is not None:
        cache.move_to_end(key)
    return value


def remember(cache: OrderedDict[K, V], key: K, value: V, size: int) -> list[V]:
    """Store ``value`` as most recent; returns the least recent beyond ``size``."""
    cache[key] = value
    cache.move_to_end(key)
    return [cache.popitem(last=False)[1] for _ in range(len(cache) - max(1, size))]


@dataclasses.dataclass(eq=False)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        """Still open at both ends, as far as can be told without reading."""
        reader = self.reader
        closing = self.writer.is_closing() or reader.at_eof()
        return not closing and reader.exception() is None

    async def ask(self, request: bytes) -> Head:
        """Write ``request`` and read the answer's head; on failure, drop it."""
        try:
            self.writer.write(request)
            if self.writer.transport.get_write_buffer_size():
                await self.writer.drain()  # a big body, a slow reader
            return await read_head(self.reader)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Drop at once, unread data and all (never back into a pool)."""
        self.writer.transport.abort()


class Pools:
    """Idle connections by key, ``size`` per key, ``max_pools`` keys at most."""

    def __init__(self, size: int, max_pools: int) -> None:
        self.size, self.max_pools = size, max_pools
        self._idle: OrderedDict[PoolKey, list[Connection]] = OrderedDict()
        self.idle = 0  # connections in all pools

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, key: PoolKey) -> Connection | None:
        """An idle connection for ``key``, if one is left; the key becomes the
        most recent, and a pool beyond ``max_pools`` is closed."""
        pool = recall(self._idle, key)
        if pool is None:
            for evicted in remember(self._idle, key, [], self.max_pools):
                self.idle -= len(evicted)
                for connection in evicted:
                    connection.close()
            return None
        while pool:
            connection = pool.pop()
            self.idle -= 1
            if connection.usable():
                return connection
            connection.close()
        return None

    def give_back(self, key: PoolKey, connection: Connection) -> None:
        """Keep ``connection`` for the next request, unless its pool is gone or full."""
        pool = self._idle.get(key)
        if pool is None or len(pool) >= self.size:
            connection.close()
        else:
            pool.append(connection)
            self.idle += 1

    def shrink_to(self, most: int) -> None:
        """Close idle connections, oldest pool first, until ``most`` are left."""
        for pool in self._idle.values():
            while pool and self.idle > most:
                pool.pop(0).abort()
                self.idle -= 1
            if self.idle <= most:
                return

    def abort_all(self) -> None:
        self.shrink_to(0)
        self._idle.clear()
