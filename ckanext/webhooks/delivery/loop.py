"""The delivery loop: outbox -> claim -> render -> send -> record, until done.

The loop owns the order of the steps and the pacing (the per-host schedule,
batching of outcomes); the I/O itself is ``transport.submit(url, body,
headers)``, non-blocking requests on the transport's own event loop, started
in ``_start_due`` and collected in ``_wait``, so the steps never wait on a
receiver.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait

import ckan.model as model

from ckanext.webhooks import config as cfg
from ckanext.webhooks import control, leases, metrics
from ckanext.webhooks.delivery import consent, outcomes
from ckanext.webhooks.delivery.claiming import (
    Claim,
    claim_due,
    lease_for,
    release,
    seconds_until_next_due,
)
from ckanext.webhooks.delivery.listener import others_waiting
from ckanext.webhooks.delivery.outbox import expand_events
from ckanext.webhooks.delivery.rendering import Prepared, Renderer
from ckanext.webhooks.delivery.throttle import HORIZON, HostThrottle, WebhookThrottle
from ckanext.webhooks.http import Outcome, Transport
from ckanext.webhooks.model import utcnow

__all__ = ["Deliverer", "transport_from_config"]

RECORD_INTERVAL = 0.5  # seconds an outcome may wait to be written with others
GIVE_WAY_CHECK = 1.0  # seconds between looks for other jobs on the queue
HOUSEKEEPING_INTERVAL = 30.0  # seconds between looks for expired webhooks
# A job waits for what a ceiling held back only if it is due this soon;
# later (a webhook allowed a few a minute) it is the dispatcher's, as retries.
MAX_REST = 5.0


def transport_from_config() -> Transport:
    return Transport(
        cfg.address_policy(),
        timeout=cfg.timeout(),
        max_response_bytes=cfg.max_response_bytes(),
        pool_size=cfg.concurrency(),
        concurrency=cfg.concurrency(),
    )


class Deliverer:
    """Sends due deliveries concurrently and records every outcome."""

    def __init__(
        self,
        transport: Transport | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.stop_requested = stop_requested
        self.transport = transport or transport_from_config()
        self.concurrency = cfg.concurrency()
        self.coalesce_seconds = cfg.coalesce_seconds()
        self.schedule = cfg.retry_schedule()
        self.max_failures = cfg.max_failures()
        self.lease = lease_for(cfg.timeout())
        self.throttle = HostThrottle(cfg.max_rate_per_host())
        self.webhook_throttle = WebhookThrottle()
        self.handshakes = consent.Handshakes(self.transport, self.lease)
        self._housekept_at = 0.0
        self.renderer = Renderer()
        self.stats = {
            "sent": 0,
            "succeeded": 0,
            "failed": 0,
            "skipped": 0,
            "throttled": 0,
        }
        self._timetable: list[tuple[float, int, Prepared]] = []  # (at, n, item)
        self._tiebreak = itertools.count()
        self._held_until = 0.0  # monotonic time the last held-back send is due
        # A send that starts late (the loop was recording, say) must not
        # bunch up with the next ones: sends to one host stay this far apart.
        # One that starts later than this after its slot gives the slot up
        # and goes back to the queue: catching up would be a burst.
        rate = cfg.max_rate_per_host()
        self._host_interval = 1.0 / rate if rate else 0.0
        self._min_gap = 0.5 / rate if rate else 0.0
        self._too_late = max(1.0 / rate, 0.1) if rate else 0.0
        self._last_start: dict[str, float] = {}
        self.gave_way = False  # stopped early because another job waits
        self.stopped = False  # stopped early because the worker stops

    def close(self) -> None:
        self.transport.close()

    def run(self, budget_seconds: float | None = None) -> dict[str, int]:
        """Deliver until nothing is due soon (or the time budget is spent)."""
        deadline = time.monotonic() + budget_seconds if budget_seconds else None
        inflight: dict[Future[Outcome], Prepared] = {}
        # Outcomes are written in batches: one transaction per completed
        # request would cost more than the request itself.
        unrecorded: list[tuple[Claim, Outcome]] = []
        recorded_at = checked_at = time.monotonic()
        idle = False
        while True:
            if not self.stopped and self.stop_requested():
                # Nothing new starts, the timetable goes back (_start_due),
                # what is in flight finishes within its deadline.
                self.stopped = self.gave_way = True
            if time.monotonic() - checked_at >= GIVE_WAY_CHECK:
                checked_at = time.monotonic()
                self.gave_way = self.gave_way or others_waiting()
            out_of_time = self.gave_way or (
                deadline is not None and time.monotonic() > deadline
            )
            self._start_due(inflight)
            room = 2 * self.concurrency - len(inflight) - len(self._timetable)
            if not idle and not out_of_time and room >= self.concurrency:
                idle = not self._take(room)
                continue
            if not inflight and not self._timetable and not self.handshakes.pending:
                if out_of_time or not self._rest_until_due():
                    break
                idle = False
                continue
            done = self._wait(inflight)
            if done:
                unrecorded += [(inflight.pop(f).claim, f.result()) for f in done]
                idle = False
            if self.handshakes.collect():
                idle = False  # consent given: its deliveries are due
            if unrecorded and (
                len(unrecorded) >= self.concurrency
                or not inflight
                or time.monotonic() - recorded_at >= RECORD_INTERVAL
            ):
                self._record(unrecorded)
                unrecorded, recorded_at = [], time.monotonic()
        return self.stats

    def _take(self, room: int) -> bool:
        """Expand, claim, render and timetable a batch; False if none was due.

        Handshakes that are due start here too, and run alongside.
        """
        self._housekeeping()
        started = self.handshakes.start_due()
        if expand_events() and self.coalesce_seconds:
            # Updates wait in their window (outbox.py): this job sends them
            # when it closes, as it does what a rate held back.
            self._held_until = max(
                self._held_until, time.monotonic() + self.coalesce_seconds
            )
        claims = claim_due(room, self.lease)
        if not claims:
            return bool(started)
        ready, skipped = self.renderer.render(claims)
        if skipped:
            self.stats["skipped"] += len(skipped)
            outcomes.record([], skipped, self.schedule, self.max_failures)
        self._timetable_by_host(ready)
        return True

    def _housekeeping(self) -> None:
        """Now and then (and first thing in a job): note that a worker is at
        work; disable webhooks whose lease or time to consent ran out."""
        if time.monotonic() - self._housekept_at < HOUSEKEEPING_INTERVAL:
            return
        self._housekept_at = time.monotonic()
        control.touch_worker_seen()
        now = utcnow()
        leases.expire_overdue(now)
        consent.expire_overdue(now)
        model.Session.commit()

    def _within_webhook_rates(
        self, ready: list[Prepared]
    ) -> list[tuple[float, Prepared]]:
        """(earliest delay, item) for what each webhook's own ceiling lets go;
        the rest waits in the queue."""
        admitted: list[tuple[float, Prepared]] = []
        by_webhook: dict[str, list[Prepared]] = defaultdict(list)
        for prepared in ready:
            if prepared.claim.webhook.rate_per_minute:
                by_webhook[prepared.claim.webhook.id].append(prepared)
            else:
                admitted.append((0.0, prepared))
        for webhook_id, items in by_webhook.items():
            rate = items[0].claim.webhook.rate_per_minute
            delays, next_free = self.webhook_throttle.book(webhook_id, len(items), rate)
            admitted += zip(delays, items, strict=False)
            held = [prepared.claim for prepared in items[len(delays) :]]
            metrics.count_deferrals("webhook", (p.host for p in items[len(delays) :]))
            self._hold(held, next_free, spacing=60 / rate)
        return admitted

    def _timetable_by_host(self, ready: list[Prepared]) -> None:
        """Book each webhook's and each host's sending slots; what gets none
        waits in the queue."""
        by_host: dict[str, list[tuple[float, Prepared]]] = defaultdict(list)
        for earliest, prepared in self._within_webhook_rates(ready):
            by_host[prepared.host].append((earliest, prepared))
        now = time.monotonic()
        for host, items in by_host.items():
            delays, next_free = self.throttle.book(host, len(items))
            for delay, (earliest, prepared) in zip(delays, items, strict=False):
                entry = (now + max(delay, earliest), next(self._tiebreak), prepared)
                heapq.heappush(self._timetable, entry)
            held = [prepared.claim for _, prepared in items[len(delays) :]]
            metrics.count_deferrals("host", [host] * len(held))
            self._hold(held, next_free, spacing=self._host_interval)

    def _hold(self, held: list[Claim], next_free: float, spacing: float) -> None:
        """Back to the queue, due from when the next sending slot frees, one
        slot apart."""
        if not held:
            return
        self.stats["throttled"] += len(held)
        release(held, utcnow() + datetime.timedelta(seconds=next_free), spacing)
        if next_free <= MAX_REST:  # this job sends them, as they fall due
            last = time.monotonic() + next_free + (len(held) - 1) * spacing
            self._held_until = max(self._held_until, last)

    def _start_due(self, inflight: dict) -> None:
        """Start timetabled sends that are due, as senders are free."""
        if self.gave_way:
            self._give_back_timetable()
            return
        now = time.monotonic()
        missed: list[Claim] = []
        while (
            self._timetable
            and self._timetable[0][0] <= now
            and len(inflight) < self.concurrency
        ):
            slot, _, prepared = heapq.heappop(self._timetable)
            if self._min_gap and not self._paced(slot, prepared, now, missed):
                continue
            future = self.transport.submit(
                prepared.claim.webhook.address,
                prepared.body,
                prepared.headers,
            )
            inflight[future] = prepared
        if missed:
            self.stats["throttled"] += len(missed)
            release(missed, utcnow())

    def _paced(
        self, slot: float, prepared: Prepared, now: float, missed: list[Claim]
    ) -> bool:
        """May this send to a rate-limited host start now? If not, it is put
        back in the timetable (too close to the last) or given up (too late)."""
        if now - slot > self._too_late:
            missed.append(prepared.claim)
            return False
        earliest = self._last_start.get(prepared.host, 0.0) + self._min_gap
        if earliest > now:
            entry = (earliest, next(self._tiebreak), prepared)
            heapq.heappush(self._timetable, entry)
            return False
        self._last_start[prepared.host] = now
        return True

    def _give_back_timetable(self) -> None:
        """Another job waits, or the worker stops: what has not started goes
        back to the queue, due now."""
        if self._timetable:
            release([entry[2].claim for entry in self._timetable], utcnow())
            self._timetable.clear()

    def _wait(self, inflight: dict) -> set[Future[Outcome]]:
        """Until a send or a handshake completes, the next timetabled send (if
        a sender is free for it), or 1 s; the sends that completed."""
        timeout = 1.0
        if self._timetable and len(inflight) < self.concurrency:
            timeout = min(timeout, max(0.0, self._timetable[0][0] - time.monotonic()))
        waiting = [*inflight, *self.handshakes.pending]
        if not waiting:
            time.sleep(timeout)
            return set()
        done, _ = wait(waiting, timeout=timeout, return_when=FIRST_COMPLETED)
        return {future for future in done if future in inflight}

    def _rest_until_due(self) -> bool:
        """Sleep until what this loop held back for its host's rate (or an
        update window) falls due; False if it held nothing back (retries are
        the dispatcher's)."""
        if time.monotonic() > self._held_until:
            return False
        wait_for = seconds_until_next_due()
        if wait_for is None:
            return False
        time.sleep(min(max(wait_for, 0.05), HORIZON))  # 0.05: no busy loop
        return True

    def _record(self, results: list[tuple[Claim, Outcome]]) -> None:
        outcomes.record(results, [], self.schedule, self.max_failures)
        for _, outcome in results:
            self.stats["sent"] += 1
            self.stats["succeeded" if outcome.ok else "failed"] += 1
