"""What the benchmark scripts share: configuration, CKAN in this process, seed
data written straight to the tables, stock worker subprocesses, statistics.

Every script loads CKAN in its own process (with CKAN's search index stubbed:
Solr cannot be had here) to seed data and, where measured, to call actions;
deliveries are always made by real ``ckan jobs worker`` subprocesses.
"""

from __future__ import annotations

import atexit
import configparser
import logging.config
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:  # the scripts run as ``python bench/x.py``
    sys.path.insert(1, str(REPO))

from tests.support.processes import CKAN_CLI, stop_process  # noqa: E402
from tests.support.solr import stub_search_index  # noqa: E402

BENCH_INI = BENCH_DIR / "bench.ini"
WEBHOOK_TABLES = "webhook_attempt, webhook_delivery, webhook_event, webhook"
SEARCH_STUB_NOTE = (
    "note: no Solr here - CKAN's search index is stubbed in-process "
    "(index insert/update/remove do nothing, queries return no hits, "
    "package_show reads the database), "
    "in the benchmark process only; both sides of each ratio are stubbed alike"
)


# -- configuration ---------------------------------------------------------
def ini_with(**options: Any) -> Path:
    """A temporary copy of bench.ini with ``options`` set in [app:main]."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(BENCH_INI)
    for key, value in options.items():
        parser.set("app:main", key, str(value))
    handle, name = tempfile.mkstemp(prefix="webhooks-bench-", suffix=".ini")
    with os.fdopen(handle, "w") as ini:
        parser.write(ini)
    atexit.register(Path(name).unlink, missing_ok=True)
    return Path(name)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem_kb / 2**20:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def header(title: str) -> None:
    print(f"== {title}")
    print(f"machine: {machine()}")
    print(f"database: {os.environ.get('CKAN_SQLALCHEMY_URL', '(bench.ini)')}")
    print(f"redis: {os.environ.get('CKAN_REDIS_URL', '(bench.ini)')}")


# -- CKAN in this process --------------------------------------------------
def _ensure_database(url: str) -> None:
    """Create the benchmark database if the server lacks it."""
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1].split("?")[0]
    server = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres")
    with server.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).scalar()
        if not exists:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text(f'CREATE DATABASE "{name}"')
            )
    server.dispose()


def prepare_database(ini: Path = BENCH_INI) -> None:
    """Create CKAN's and the extension's tables unless they are there."""
    import sqlalchemy as sa
    from ckan.cli import CKANConfigLoader

    url = os.environ.get("CKAN_SQLALCHEMY_URL") or CKANConfigLoader(
        str(ini)
    ).get_config().get("sqlalchemy.url")
    _ensure_database(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        have = conn.execute(
            sa.text(
                "SELECT to_regclass('public.package') IS NOT NULL, "
                "to_regclass('public.webhook') IS NOT NULL"
            )
        ).one()
    engine.dispose()
    if not have[0]:
        subprocess.run([CKAN_CLI, "-c", str(ini), "db", "init"], check=True)
    # Always: applies the extension's newer migrations to an older database.
    subprocess.run(
        [CKAN_CLI, "-c", str(ini), "db", "upgrade", "-p", "webhooks"],
        check=True,
        capture_output=have[1],
    )


def load_ckan(ini: Path = BENCH_INI) -> Any:
    """Load CKAN here (plugins from the ini); return the WSGI app."""
    prepare_database(ini)
    stub_search_index()
    from ckan.cli import CKANConfigLoader
    from ckan.config.middleware import make_app

    logging.config.fileConfig(str(ini), disable_existing_loggers=False)
    app = make_app(CKANConfigLoader(str(ini)).get_config())
    # Actions called here (seeding) need a request context. HTTP requests made
    # through the app must not share it: see setup_done().
    _setup_contexts.append(app._wsgi_app.test_request_context())
    _setup_contexts[-1].push()
    return app


_setup_contexts: list[Any] = []


def setup_done() -> None:
    """Leave the seeding request context before timing requests to the app."""
    while _setup_contexts:
        _setup_contexts.pop().pop()


def reset_state() -> None:
    """Empty the webhook tables and this site's job queue."""
    import ckan.model as model
    from ckan.lib import jobs
    from ckan.lib.redis import connect_to_redis
    from sqlalchemy import text

    from ckanext.webhooks import config as cfg
    from ckanext.webhooks.delivery import wake_key

    model.Session.execute(text(f"TRUNCATE {WEBHOOK_TABLES} RESTART IDENTITY"))
    model.Session.commit()
    jobs.get_queue(cfg.queue()).empty()
    connect_to_redis().delete(wake_key())


def sysadmin() -> dict[str, Any]:
    """The benchmark's sysadmin (created once) with a fresh API token."""
    import ckan.model as model
    import ckan.plugins.toolkit as tk

    name = "webhooks_bench_admin"
    user = model.User.by_name(name)
    if user is None:
        tk.get_action("user_create")(
            {"ignore_auth": True},
            {
                "name": name,
                "email": "bench@example.org",
                "password": "bench-" + uuid.uuid4().hex,
            },
        )
        user = model.User.by_name(name)
    user.sysadmin = True
    model.Session.commit()
    token = tk.get_action("api_token_create")(
        {"ignore_auth": True, "user": name}, {"user": name, "name": "bench"}
    )["token"]
    return {"id": user.id, "name": name, "token": token}


def users(count: int) -> list[str]:
    """Ids of ``count`` plain users (created once), owners of webhooks."""
    import ckan.model as model

    ids = []
    for n in range(count):
        name = f"webhooks_bench_user_{n}"
        user = model.User.by_name(name)
        if user is None:
            user = model.User(name=name, email=f"{name}@example.org")
            user.state = "active"
            model.Session.add(user)
            model.Session.flush()
        ids.append(user.id)
    model.Session.commit()
    return ids


def create_datasets(admin: dict[str, Any], count: int, org: bool = True) -> list:
    """``count`` public datasets with two resources each, in one organization."""
    import ckan.plugins.toolkit as tk

    context = {"user": admin["name"], "ignore_auth": True}
    run = uuid.uuid4().hex[:8]
    owner_org = None
    if org:
        owner_org = tk.get_action("organization_create")(
            dict(context), {"name": f"bench-org-{run}"}
        )["id"]
    datasets = []
    for n in range(count):
        datasets.append(
            tk.get_action("package_create")(
                dict(context),
                {
                    "name": f"bench-{run}-{n}",
                    "title": f"Benchmark dataset {n}",
                    "notes": "A dataset the benchmarks update. " * 8,
                    "owner_org": owner_org,
                    "tags": [{"name": f"tag{t}"} for t in range(5)],
                    "extras": [{"key": f"k{t}", "value": "v" * 20} for t in range(5)],
                    "resources": [
                        {"url": f"http://example.org/{run}/{n}/{r}.csv", "name": "r"}
                        for r in range(2)
                    ],
                },
            )
        )
    return datasets


def insert_webhooks(rows: list[dict[str, Any]]) -> list[str]:
    """Insert webhooks straight into the table (the actions limit and check
    addresses one by one, which seeding 10,000 does not need)."""
    import ckan.model as model
    from sqlalchemy import text

    from ckanext.webhooks.http import receiver_host
    from ckanext.webhooks.model import make_secret, make_webhook_id, utcnow

    now = utcnow()
    full = [
        {
            "id": make_webhook_id(),
            "receiver_host": receiver_host(row["address"]),
            "topic": "dataset/update",
            "package_id": None,
            "organization_id": None,
            "owner_id": None,
            "secret": make_secret(),
            "created": now,
            "filter_tags": None,
            "filter_groups": None,
            **row,
        }
        for row in rows
    ]
    model.Session.execute(
        text(
            "INSERT INTO webhook (id, topic, topics, address, receiver_host, owner_id, "
            "created, secret, package_id, organization_id, filter_tags, "
            "filter_groups, active, failure_count) "
            "VALUES (:id, :topic, ARRAY[CAST(:topic AS text)], :address, "
            ":receiver_host, :owner_id, :created, "
            ":secret, :package_id, :organization_id, :filter_tags, "
            ":filter_groups, true, 0)"
        ),
        full,
    )
    model.Session.commit()
    return [row["id"] for row in full]


def insert_events(datasets: list[dict[str, Any]], count: int) -> None:
    """``count`` dataset/update events in the outbox, round-robin over
    ``datasets``, as ``notify`` writes them for that many updates."""
    import ckan.model as model
    from sqlalchemy import text

    from ckanext.webhooks.model import make_event_id, utcnow

    rows = []
    for n in range(count):
        dataset = datasets[n % len(datasets)]
        rows.append(
            {
                "id": make_event_id(),
                "entity_id": dataset["id"],
                "package_id": dataset["id"],
                "organization_id": dataset["owner_org"],
                "created": utcnow(),
            }
        )
    model.Session.execute(
        text(
            "INSERT INTO webhook_event (id, topic, entity_type, entity_id, "
            "package_id, organization_id, private, snapshot, created, expanded) "
            "VALUES (:id, 'dataset/update', 'dataset', :entity_id, :package_id, "
            ":organization_id, false, '{}', :created, false)"
        ),
        rows,
    )
    model.Session.commit()


def delivery_outcomes() -> dict[str, int]:
    import ckan.model as model
    from sqlalchemy import text

    rows = model.Session.execute(
        text("SELECT status, count(*) FROM webhook_delivery GROUP BY status")
    ).all()
    model.Session.commit()
    return {status: count for status, count in rows}


def wake_and_wait_for_start(timeout: float = 10.0) -> float:
    """Queue the delivery job, return when a worker has taken it (the job
    clears the wake-up flag first thing). Returns the time of the wake-up."""
    from ckan.lib.redis import connect_to_redis

    from ckanext.webhooks.delivery import wake_key, wake_workers

    woken_at = time.time()
    wake_workers()
    redis = connect_to_redis()
    deadline = time.monotonic() + timeout
    while redis.exists(wake_key()) and time.monotonic() < deadline:
        time.sleep(0.005)
    return woken_at


# -- workers ---------------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Worker:
    """A stock ``ckan jobs worker`` subprocess, and the peak memory of the
    work horses it forks (one per job: that is where delivery runs)."""

    def __init__(self, ini: Path = BENCH_INI, log_name: str = "worker") -> None:
        results = BENCH_DIR / "results"
        results.mkdir(exist_ok=True)
        self.log_path = results / f"{log_name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [CKAN_CLI, "-c", str(ini), "jobs", "worker"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.horse_peak_kb: dict[int, int] = {}
        self.horse_cpu: dict[int, float] = {}
        self.worker_peak_kb = 0
        self._watching = True
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while self._watching:
            self.worker_peak_kb = max(
                self.worker_peak_kb, _status_kb(self.process.pid, "VmHWM")
            )
            for child in _children(self.process.pid):
                peak = _status_kb(child, "VmHWM")
                if peak:
                    self.horse_peak_kb[child] = max(
                        peak, self.horse_peak_kb.get(child, 0)
                    )
                cpu = _cpu_seconds(child)
                if cpu:
                    self.horse_cpu[child] = max(cpu, self.horse_cpu.get(child, 0.0))
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the worker listens on the queue."""
        from ckan.lib.redis import connect_to_redis
        from rq import Worker as RqWorker

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited, see {self.log_path}")
            for worker in RqWorker.all(connection=connect_to_redis()):
                if worker.pid == self.process.pid and worker.state == "idle":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready after {timeout}s, see {self.log_path}")

    def stop(self) -> None:
        self._watching = False
        stop_process(self.process, grace=20, group=False)  # the horse finishes
        self._watcher.join()
        self._log.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CpuMeter:
    """CPU seconds used during a run, by whom: the whole machine (``/proc/stat``),
    given processes (a receiver), and PostgreSQL's backends, those serving the
    benchmark's database apart from all others (another user's, or the
    server's own). Backends come and go with each job: they are sampled
    every 50 ms, so the last 50 ms of a short-lived one may be missed."""

    def __init__(self, pids: list[int], database: str) -> None:
        self.pids, self.database = pids, database
        self._start = {pid: _cpu_seconds(pid) for pid in pids}
        self._machine = _machine_busy()
        self._since = time.monotonic()
        self.seconds = 0.0  # the run's length, once stopped
        self._postgres: dict[int, tuple[bool, float, float]] = {}  # ours, first, last
        self._sample_postgres(initial=True)
        self._watching = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _sample_postgres(self, initial: bool = False) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            pid = int(entry.name)
            cpu = _cpu_seconds(pid)
            # A backend born during the run counts from zero.
            ours, first, _ = self._postgres.get(
                pid, (False, cpu if initial else 0.0, cpu)
            )
            ours = ours or f" {self.database} ".encode() in title
            self._postgres[pid] = (ours, first, cpu)

    def _watch(self) -> None:
        while self._watching:
            self._sample_postgres()
            time.sleep(0.05)

    def stop(self) -> dict[str, float]:
        """CPU seconds: machine, each pid, and ``postgres`` / ``postgres other``."""
        self._watching = False
        self._thread.join()
        self._sample_postgres()
        self.seconds = time.monotonic() - self._since
        used = {"machine": _machine_busy() - self._machine}
        for pid in self.pids:
            used[str(pid)] = _cpu_seconds(pid) - self._start[pid]
        used["postgres"] = sum(b - a for ours, a, b in self._postgres.values() if ours)
        used["postgres other"] = sum(
            b - a for ours, a, b in self._postgres.values() if not ours
        )
        return used


def _machine_busy() -> float:
    """CPU seconds the machine spent busy since boot, all CPUs together."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# -- statistics ------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


def median_interval(
    values: list[float], confidence: float = 0.9, resamples: int = 2000
) -> tuple[float, float]:
    """Where the median of ``values`` lies with ``confidence``, by bootstrap:
    the medians of ``resamples`` samples drawn from ``values`` with
    replacement (seeded, so a run's figures are its own to repeat)."""
    draw = random.Random(0)
    medians = sorted(
        statistics.median(draw.choices(values, k=len(values))) for _ in range(resamples)
    )
    tail = (1 - confidence) / 2
    return percentile(medians, tail), percentile(medians, 1 - tail)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"
