"""Receivers on 127.0.0.1, one tool per need.

* ``recording``: a well-behaved threaded HTTP server in the test's process
  that records every request and answers from a script (the ``receiver``
  fixture).
* ``misbehaving``: raw sockets that stall, trickle, hang up or answer
  nonsense, for the limits of ``ckanext.webhooks.http``.
* ``counting``: a fast asyncio server in a process of its own that only
  counts, for the benchmarks (``ReceiverProcess`` starts it).
"""
