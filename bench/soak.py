"""Chaos soak: edits under load while faults keep coming, then the count.

    python bench/soak.py --minutes 2

A live CKAN (``ckan run``), two stock workers, the dispatcher and four
receivers on 127.0.0.1; a redis-server of its own and a database of its own
(``ckan_webhooks_soak`` unless CKAN_SQLALCHEMY_URL names another: its
connections are terminated on purpose). Datasets and resources are edited
through the action API while, every few seconds, one fault chosen at random
strikes: SIGKILL of a work horse or of a whole worker, SIGTERM of a worker,
Redis stopped and started, the workers' and dispatcher's PostgreSQL
connections terminated, or a receiver answering 500, hanging past the
deadline or resetting connections for a while. Processes that end are
started again, as a service manager would.

Then the faults stop, delivery drains, and every (event, webhook) that
should have been delivered is counted: delivered, missing, duplicates (and
whether each duplicate had an attempt in flight when a process was killed),
and whether the delivery log agrees with what the receivers accepted. The
exit status is non-zero if anything is missing or the log disagrees.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import (
    CKAN_CLI,
    header,
    ini_with,
    insert_webhooks,
    load_ckan,
    reset_state,
    sysadmin,
    verdict,
)

from tests.support.processes import descendants, stop_process
from tests.support.redis_server import PrivateRedis

SOAK_DB = "postgresql://postgres@127.0.0.1:5432/ckan_webhooks_soak"
TIMEOUT = 2  # the transport's deadline, seconds
OPTIONS = {
    "ckanext.webhooks.timeout": TIMEOUT,
    "ckanext.webhooks.concurrency": 10,
    "ckanext.webhooks.max_rate_per_host": 0,
    "ckanext.webhooks.linger_seconds": 30,
    "ckanext.webhooks.max_failures": 0,
    # Enough quick retries to outlast any fault window of the soak.
    "ckanext.webhooks.retry_schedule": "1 1 2 2" + " 3" * 26,
    "ckan.jobs.timeout": 120,
}
APP_NAME = "ckanext-webhooks-soak"  # PGAPPNAME of the processes faults hit


# -- receivers -------------------------------------------------------------
class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a sender that gave up on a hanging answer: expected here


class ChaosReceiver:
    """Accepts POSTs and counts what it accepted, per (event id, path);
    ``misbehave(mode, seconds)`` makes it answer 500, hang past the sender's
    deadline, or reset connections. With ``fail_first`` it refuses the first
    try of every message (a receiver failing on purpose)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.accepted: collections.Counter = collections.Counter()
        self.mode, self.until = "ok", 0.0
        self.fail_first = fail_first
        self.tried: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = (self.headers.get("webhook-id", ""), self.path)
                status = receiver.answer(key)
                if status == "reset":
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                if status == "hang":
                    time.sleep(TIMEOUT + 1)
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, key: tuple[str, str]) -> int | str:
        with self.lock:
            if time.monotonic() < self.until:
                return 500 if self.mode == "500" else self.mode
            if self.fail_first and key not in self.tried:
                self.tried.add(key)
                return 500
            self.accepted[key] += 1
            return 200

    def misbehave(self, mode: str, seconds: float) -> None:
        with self.lock:
            self.mode, self.until = mode, time.monotonic() + seconds


# -- processes -------------------------------------------------------------
class Fleet:
    """The workers and the dispatcher, restarted when they end."""

    def __init__(self, ini: Path, logs: Path) -> None:
        self.ini, self.logs = ini, logs
        self.env = {**os.environ, "PGAPPNAME": APP_NAME}
        self.workers: list[subprocess.Popen | None] = [None, None]
        self.dispatcher: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(
            [CKAN_CLI, "-c", str(self.ini), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def supervise(self) -> None:
        for n, worker in enumerate(self.workers):
            if worker is None or worker.poll() is not None:
                self.restarts += worker is not None
                self.workers[n] = self._start(f"worker{n}", "jobs", "worker")
        if self.dispatcher is None or self.dispatcher.poll() is not None:
            self.restarts += self.dispatcher is not None
            self.dispatcher = self._start(
                "dispatcher", "webhooks", "dispatch", "--loop", "--interval", "1"
            )

    def stop(self) -> None:
        for process in [*self.workers, self.dispatcher]:
            if process is not None:
                stop_process(process, grace=0)


# -- faults ----------------------------------------------------------------
def in_flight() -> set[tuple[str, str]]:
    """(event, webhook) of every delivery a worker holds a lease on now."""
    import ckan.model as model
    from sqlalchemy import text

    from ckanext.webhooks.model import utcnow

    rows = model.Session.execute(
        text(
            "SELECT event_id, webhook_id FROM webhook_delivery "
            "WHERE status = 'pending' AND lease_until > :now"
        ),
        {"now": utcnow()},
    ).all()
    model.Session.commit()
    return {tuple(row) for row in rows}


def terminate_connections() -> int:
    """pg_terminate_backend for the workers' and dispatcher's connections
    to this database only."""
    import ckan.model as model
    from sqlalchemy import text

    ended = model.Session.execute(
        text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = :app"
        ),
        {"app": APP_NAME},
    ).scalar()
    model.Session.commit()
    return ended


class Chaos:
    """One fault every ``interval`` seconds, chosen at random."""

    FAULTS = [
        "kill horse",
        "kill worker",
        "term worker",
        "restart redis",
        "terminate connections",
        "receiver 500",
        "receiver hang",
        "receiver reset",
    ]

    # Faults that end a process, or its database session, with requests in
    # flight. SIGTERM is not one: a worker told to stop finishes them.
    KILLS = {"kill horse", "kill worker", "terminate connections"}

    def __init__(self, fleet: Fleet, redis: PrivateRedis, receivers: list) -> None:
        self.fleet, self.redis, self.receivers = fleet, redis, receivers
        self.counts: collections.Counter = collections.Counter()
        self.in_flight_at_kills: set[tuple[str, str]] = set()

    def strike(self, rng: random.Random) -> None:
        fault = rng.choice(self.FAULTS)
        worker = rng.choice([w for w in self.fleet.workers if w is not None])
        if fault.startswith("receiver"):
            rng.choice(self.receivers).misbehave(fault.split()[1], rng.uniform(2, 8))
        elif fault in self.KILLS:  # what was in flight may arrive twice
            self.in_flight_at_kills |= in_flight()
        if fault == "kill horse":
            horses = descendants(worker.pid)
            if not horses:
                return  # nothing to kill: count only what happened
            os.kill(rng.choice(horses), signal.SIGKILL)
        elif fault == "kill worker":
            stop_process(worker, grace=0)  # the worker and its horse
        elif fault == "term worker":
            worker.send_signal(signal.SIGTERM)
        elif fault == "restart redis":
            self.redis.stop()
            time.sleep(rng.uniform(1, 4))
            self.redis.start()
        elif fault == "terminate connections":
            terminate_connections()
        self.counts[fault] += 1


# -- load ------------------------------------------------------------------
def seed(admin: dict, datasets: int, webhooks: int, receivers: list) -> list[dict]:
    """An organization with datasets (a third private), a member who follows
    the private ones, and ``webhooks`` webhooks: most follow one dataset, a
    few the organization or the whole site."""
    import ckan.plugins.toolkit as tk

    from ckanext.webhooks.model import make_webhook_id

    context = {"user": admin["name"], "ignore_auth": True}
    run = os.urandom(4).hex()
    org = tk.get_action("organization_create")(dict(context), {"name": f"soak-{run}"})[
        "id"
    ]
    member = tk.get_action("user_create")(
        dict(context),
        {
            "name": f"soak-member-{run}",
            "email": f"{run}@example.org",
            "password": "soak-" + os.urandom(8).hex(),
        },
    )
    tk.get_action("organization_member_create")(
        dict(context), {"id": org, "username": member["name"], "role": "editor"}
    )
    packages = [
        tk.get_action("package_create")(
            dict(context),
            {
                "name": f"soak-{run}-{n}",
                "owner_org": org,
                "private": n % 3 == 0,
                "resources": [{"url": f"http://example.org/{n}.csv"}],
            },
        )
        for n in range(datasets)
    ]
    rows = []
    for n in range(webhooks):
        package = packages[n % len(packages)]
        webhook_id = make_webhook_id()
        row = {
            "id": webhook_id,
            "address": f"{receivers[n % len(receivers)].url}/{webhook_id}",
            "topic": ("dataset/update", "resource/update", "dataset/*")[n % 3],
            "owner_id": admin["id"],
        }
        if n % 20 == 1:  # one in twenty follows the organization
            row["organization_id"] = org
        elif n % 20 != 2:  # one in twenty the whole site, the rest a dataset
            row["package_id"] = package["id"]
            if package["private"]:
                row["owner_id"] = member["id"]
        rows.append(row)
    insert_webhooks(rows)
    return packages


def edit(site_url: str, token: str, packages: list, rate: float, stop) -> dict:
    """Dataset and resource edits through the action API, ``rate`` a second."""
    import requests

    done: collections.Counter = collections.Counter()
    session = requests.Session()
    session.headers["Authorization"] = token
    rng = random.Random(1)
    while not stop.is_set():
        package = rng.choice(packages)
        if rng.random() < 0.5:
            action, data = (
                "package_patch",
                {"id": package["id"], "notes": str(rng.random())},
            )
        else:
            resource = package["resources"][0]["id"]
            action, data = (
                "resource_patch",
                {"id": resource, "description": str(rng.random())},
            )
        try:
            ok = session.post(f"{site_url}/api/3/action/{action}", json=data).ok
        except requests.RequestException:
            ok = False
        done["edits" if ok else "failed edits"] += 1
        stop.wait(1 / rate)
    return done


# -- the count ---------------------------------------------------------------
def last_event() -> int:
    import ckan.model as model
    from sqlalchemy import text

    last = model.Session.execute(
        text("SELECT coalesce(max(sequence), 0) FROM webhook_event")
    ).scalar()
    model.Session.commit()
    return last


def expected_pairs(after: int) -> set[tuple[str, str]]:
    """(event, webhook) for every event committed after the seeding and every
    webhook whose topic and scope take it: worked out here, not by the
    extension's SQL."""
    import ckan.model as model
    from sqlalchemy import text

    events = model.Session.execute(
        text(
            "SELECT id, topic, package_id, organization_id FROM webhook_event "
            "WHERE sequence > :after"
        ),
        {"after": after},
    ).all()
    hooks = model.Session.execute(
        text("SELECT id, topic, package_id, organization_id FROM webhook")
    ).all()
    model.Session.commit()
    pairs = set()
    for event in events:
        wildcard = event.topic.split("/")[0] + "/*"
        for hook in hooks:
            if (
                hook.topic in (event.topic, wildcard)
                and hook.package_id in (None, event.package_id)
                and hook.organization_id in (None, event.organization_id)
            ):
                pairs.add((event.id, hook.id))
    return pairs


def logged_successes() -> set[tuple[str, str]]:
    import ckan.model as model
    from sqlalchemy import text

    rows = model.Session.execute(
        text(
            "SELECT event_id, webhook_id FROM webhook_attempt WHERE outcome = 'success'"
        )
    ).all()
    model.Session.commit()
    return {tuple(row) for row in rows}


def attempts() -> dict[str, int]:
    import ckan.model as model
    from sqlalchemy import text

    rows = model.Session.execute(
        text("SELECT outcome, count(*) FROM webhook_attempt GROUP BY outcome")
    ).all()
    model.Session.commit()
    return dict(rows)


def undelivered() -> int:
    import ckan.model as model
    from sqlalchemy import text

    waiting = model.Session.execute(
        text(
            "SELECT (SELECT count(*) FROM webhook_event WHERE NOT expanded) "
            "+ (SELECT count(*) FROM webhook_delivery WHERE status = 'pending')"
        )
    ).scalar()
    model.Session.commit()
    return waiting


def count(receivers: list, chaos: Chaos, after: int) -> bool:
    """Print the figures; True if nothing is missing and the log agrees."""
    accepted: collections.Counter = collections.Counter()
    for receiver in receivers:
        for (event_id, path), n in receiver.accepted.items():
            accepted[(event_id, path.rsplit("/", 1)[1])] += n
    expected = expected_pairs(after)
    logged = logged_successes()
    missing = expected - set(accepted)
    unexpected = set(accepted) - expected
    duplicated = {key: n - 1 for key, n in accepted.items() if n > 1}
    explained = {key for key in duplicated if key in chaos.in_flight_at_kills}
    logged_not_arrived = logged - set(accepted)
    arrived_not_logged = set(accepted) - logged
    disagreements = len(logged_not_arrived) + len(arrived_not_logged)
    print(f"faults: {dict(chaos.counts)}; processes restarted: {chaos.fleet.restarts}")
    print(f"(event, webhook) expected: {len(expected)}")
    print(f"delivered: {len(expected & set(accepted))}")
    print(f"missing: {len(missing)}  target 0  {verdict(not missing)}")
    print(f"delivered though not expected: {len(unexpected)}")
    print(
        f"duplicates: {sum(duplicated.values())} copies of {len(duplicated)} "
        f"deliveries, {len(explained)} of them in flight at a kill; "
        f"unexplained {len(duplicated) - len(explained)}  target 0  "
        f"{verdict(len(explained) == len(duplicated))}"
    )
    print(
        f"log disagreements: {disagreements} ({len(logged_not_arrived)} logged "
        f"as delivered but not received, {len(arrived_not_logged)} received but "
        f"not logged)  target 0  {verdict(not disagreements)}"
    )
    return not missing and not disagreements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--datasets", type=int, default=12)
    parser.add_argument("--webhooks", type=int, default=300)
    parser.add_argument("--edits-per-second", type=float, default=1.0)
    parser.add_argument("--fault-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--drain-minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    os.environ.setdefault("CKAN_SQLALCHEMY_URL", SOAK_DB)
    redis = PrivateRedis()
    redis.start()
    os.environ["CKAN_REDIS_URL"] = redis.url
    logs = Path(tempfile.mkdtemp(prefix="webhooks-soak-"))
    header(f"chaos soak, {args.minutes:g} minutes (logs in {logs})")
    load_ckan(ini_with(**OPTIONS))
    reset_state()
    receivers = [ChaosReceiver(fail_first=n == 0) for n in range(4)]
    packages = seed(sysadmin(), args.datasets, args.webhooks, receivers)
    seeded = last_event()

    import ckan.plugins.toolkit as tk

    from tests.live import start_live_site

    # The same secret as here: the API token made here must be valid there.
    site = start_live_site(logs, SECRET_KEY=tk.config["SECRET_KEY"], **OPTIONS)
    fleet = Fleet(site.ini, logs)
    chaos = Chaos(fleet, redis, receivers)
    stop_edits = threading.Event()
    edits: dict = {}
    editor = threading.Thread(
        target=lambda: edits.update(
            edit(
                site.url,
                sysadmin()["token"],
                packages,
                args.edits_per_second,
                stop_edits,
            )
        )
    )
    rng = random.Random(args.seed)
    try:
        fleet.supervise()
        editor.start()
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(args.fault_every)
            fleet.supervise()
            chaos.strike(rng)
        stop_edits.set()
        editor.join()
        for receiver in receivers:
            receiver.misbehave("ok", 0)
        print(f"edits: {dict(edits)}")
        drain_start = time.monotonic()
        while (
            undelivered() and time.monotonic() < drain_start + args.drain_minutes * 60
        ):
            fleet.supervise()
            time.sleep(1)
        print(
            f"drained in {time.monotonic() - drain_start:.0f} s; still "
            f"undelivered: {undelivered()}; attempts logged: {attempts()}"
        )
        return 0 if count(receivers, chaos, seeded) else 1
    finally:
        fleet.stop()
        site.stop()
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
