"""CPU per delivery: one stock worker against a receiver that is not the limit.

    python bench/sender_cpu.py [--events 100] [--webhooks 100] [--concurrency N]

The receiver is nginx (Debian's ``nginx-light`` or ``nginx``), started here
on a free 127.0.0.1 port with a configuration of its own (``return 200``,
an access log of arrival times) and stopped at the end; a system nginx is
never touched. In one run:

* a sequential ``http.client`` keep-alive loop POSTing as many bodies of a
  delivery's size, with a delivery's headers, to the same nginx (before and
  after the worker; their mean is the reference), with its CPU per request;
* an empty delivery job (nothing due): the work horse's fixed cost, the
  fork and CKAN's ``load_environment``;
* one stock worker delivering events x webhooks (default 10,000): deliveries
  per second from the wake-up of the queue to the last arrival in nginx's
  log, and the work horse's CPU per delivery (user + system, all of the job,
  fixed cost included; and without it).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import (
    SEARCH_STUB_NOTE,
    Worker,
    _children,
    create_datasets,
    delivery_outcomes,
    header,
    ini_with,
    insert_events,
    insert_webhooks,
    load_ckan,
    reset_state,
    sysadmin,
    verdict,
    wake_and_wait_for_start,
)

TARGET_CPU_MS = 0.25
TARGET_RATE = 3000.0
TARGET_RATIO = 0.4
NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    log_format arrival '$msec';
    access_log {prefix}/arrivals.log arrival buffer=256k flush=100ms;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok"; }}
    }}
}}
"""


class Nginx:
    """Our own nginx on a free loopback port, in a temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise SystemExit("nginx is missing: apt-get install -y nginx-light")
        self.prefix = Path(tempfile.mkdtemp(prefix="webhooks-bench-nginx-"))
        self.prefix.chmod(0o755)  # nginx's workers run as nobody
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=self.prefix, port=self.port))
        command = [binary, "-p", str(self.prefix), "-c", str(conf), "-e", "stderr"]
        self.process = subprocess.Popen(
            [*command, "-g", "daemon off;"], start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit(f"nginx did not start, see {self.prefix}/error.log")

    def arrivals(self, settle: float = 0.5) -> list[float]:
        """Arrival times logged so far (after the log's flush interval)."""
        time.sleep(settle)
        log = self.prefix / "arrivals.log"
        return [float(line) for line in log.read_text().split()] if log.exists() else []

    def forget(self) -> None:
        """Start a new arrivals log (nginx reopens it on SIGUSR1)."""
        (self.prefix / "arrivals.log").unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: let workers go
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sample_request(dataset: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A body and headers as big as a real delivery of ``dataset``."""
    import ckan.plugins.toolkit as tk

    from ckanext.webhooks.delivery.payload import render
    from ckanext.webhooks.model import Webhook, WebhookEvent, make_secret, utcnow

    shown = tk.get_action("package_show")(
        {"ignore_auth": True, "use_cache": False}, {"id": dataset["id"]}
    )
    event = WebhookEvent(
        id="evt_sample",
        topic="dataset/update",
        entity_type="dataset",
        entity_id=dataset["id"],
        created=utcnow(),
        sequence=1,
    )
    hook = Webhook(id="wh_sample", topic="*", address="http://x/")
    hook.secret = make_secret()
    return render(event, hook, shown)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_loop(
    nginx: Nginx, body: bytes, headers: dict[str, str], count: int
) -> tuple[float, float]:
    """(requests per second, CPU ms per request) of one keep-alive loop."""
    connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    started, cpu = time.perf_counter(), _own_cpu()
    for n in range(count):
        connection.request("POST", f"/plain/{n}", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"nginx answered {response.status}")
    elapsed, cpu = time.perf_counter() - started, _own_cpu() - cpu
    connection.close()
    return count / elapsed, 1000 * cpu / count


def empty_queue_tables() -> None:
    import ckan.model as model
    from sqlalchemy import text

    model.Session.execute(
        text("TRUNCATE webhook_attempt, webhook_delivery, webhook_event")
    )
    model.Session.commit()


def fixed_cost(ini: Path) -> float:
    """CPU seconds of a delivery job that finds nothing to do."""
    empty_queue_tables()
    with Worker(ini, log_name="sender-cpu-empty") as worker:
        worker.wait_ready()
        wake_and_wait_for_start()
        time.sleep(0.5)
        deadline = time.monotonic() + 30
        while not worker.horse_cpu and time.monotonic() < deadline:
            time.sleep(0.05)
        wait_for_idle(worker, deadline)
    return sum(worker.horse_cpu.values())


def wait_for_idle(worker: Worker, deadline: float) -> None:
    """Until the worker has no work horse (the job ended)."""
    while _children(worker.process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _thread_cpu(pid: int, tid: int) -> float:
    """User plus system CPU seconds of one thread (``/proc/pid/stat`` would
    give the whole process's)."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HorseThreads:
    """CPU seconds of every thread of the worker's work horses: the job's own
    thread (claim, render, record, and handing requests over) apart from the
    others (the sender's event loop)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.cpu: dict[tuple[int, int], float] = {}
        self._watching = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self._watching:
            for pid in _children(self.worker.process.pid):
                with contextlib.suppress(OSError):
                    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
                        cpu = _thread_cpu(pid, tid)
                        key = (pid, tid)
                        self.cpu[key] = max(cpu, self.cpu.get(key, 0.0))
            time.sleep(0.02)

    def stop(self) -> tuple[float, float]:
        """(the jobs' own threads, all other threads), in CPU seconds."""
        self._watching = False
        self._thread.join()
        own = sum(cpu for (pid, tid), cpu in self.cpu.items() if pid == tid)
        return own, sum(self.cpu.values()) - own


def worker_run(
    ini: Path, nginx: Nginx, datasets: list[dict[str, Any]], events: int, total: int
) -> dict[str, Any]:
    empty_queue_tables()
    nginx.forget()
    with Worker(ini, log_name="sender-cpu") as worker:
        worker.wait_ready()
        threads = HorseThreads(worker)
        insert_events(datasets, events)
        woken_at = wake_and_wait_for_start()
        deadline = time.monotonic() + max(60.0, total / 100)
        while time.monotonic() < deadline:
            outcomes = delivery_outcomes()
            if sum(outcomes.values()) >= total and not outcomes.get("pending"):
                break
            time.sleep(0.1)
        wait_for_idle(worker, deadline)
        arrivals = nginx.arrivals()
        own, others = threads.stop()
    outcomes = delivery_outcomes()
    seconds = (max(arrivals) if arrivals else time.time()) - woken_at
    return {
        "received": len(arrivals),
        "seconds": seconds,
        "rate": len(arrivals) / seconds,
        "cpu": sum(worker.horse_cpu.values()),
        "jobs": len(worker.horse_cpu),
        "job_thread": own,
        "sender_threads": others,
        "outcomes": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--webhooks", type=int, default=100)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="default: the declared one"
    )
    args = parser.parse_args()

    header("sender CPU: one stock worker vs a sequential http.client loop, nginx")
    options: dict[str, Any] = {}
    if args.concurrency:
        options["ckanext.webhooks.concurrency"] = args.concurrency
    ini = ini_with(**options)
    load_ckan(ini)
    print(SEARCH_STUB_NOTE)
    from ckanext.webhooks import config as cfg

    reset_state()
    admin = sysadmin()
    datasets = create_datasets(admin, args.datasets)
    total = args.events * args.webhooks
    print(
        f"load: {args.events} events x {args.webhooks} webhooks = {total} "
        f"deliveries; concurrency {cfg.concurrency()}, max_rate_per_host "
        f"{cfg.max_rate_per_host()}"
    )
    with Nginx() as nginx:
        print(f"receiver: our own nginx on {nginx.url} (return 200)")
        insert_webhooks(
            [
                {"address": f"{nginx.url}/hook/{n}", "owner_id": admin["id"]}
                for n in range(args.webhooks)
            ]
        )
        body, headers = sample_request(datasets[0])
        before = plain_loop(nginx, body, headers, total)
        fixed = fixed_cost(ini)
        run = worker_run(ini, nginx, datasets, args.events, total)
        after = plain_loop(nginx, body, headers, total)
    reset_state()
    report(args, total, len(body), before, after, fixed, run)


def report(
    args: argparse.Namespace,
    total: int,
    size: int,
    before: tuple[float, float],
    after: tuple[float, float],
    fixed: float,
    run: dict[str, Any],
) -> None:
    plain = (before[0] + after[0]) / 2
    plain_cpu = (before[1] + after[1]) / 2
    per_delivery = 1000 * run["cpu"] / total
    marginal = 1000 * (run["cpu"] - fixed * run["jobs"]) / total
    ratio = run["rate"] / plain
    print(f"payload: {size} bytes")
    print(
        f"http.client keep-alive loop: {plain:7.0f}/s (before {before[0]:.0f}/s, "
        f"after {after[0]:.0f}/s), {plain_cpu:.3f} ms CPU per request"
    )
    print(f"empty delivery job (fork + load_environment): {1000 * fixed:.0f} ms CPU")
    print(
        f"1 worker: {run['received']}/{total} arrived in {run['seconds']:.2f} s "
        f"= {run['rate']:.0f}/s; {run['jobs']} job(s), work horse CPU "
        f"{1000 * run['cpu']:.0f} ms; outcomes {run['outcomes']}"
    )
    print(
        f"  of which the job's thread (claim, render, record, hand-over) "
        f"{1000 * run['job_thread'] / total:.3f} ms per delivery, the sender's "
        f"event loop {1000 * run['sender_threads'] / total:.3f} ms per delivery"
    )
    print()
    print(
        f"target: work horse CPU per delivery {per_delivery:.3f} ms "
        f"(<= {TARGET_CPU_MS}; {marginal:.3f} ms without the fixed cost of the "
        f"job; http.client loop {plain_cpu:.3f} ms) "
        f"{verdict(per_delivery <= TARGET_CPU_MS)}"
    )
    complete = run["received"] >= total
    print(
        f"target: {run['rate']:.0f} deliveries/s (>= {TARGET_RATE:.0f}) "
        f"{verdict(complete and run['rate'] >= TARGET_RATE)}; {ratio:.2f} of the "
        f"http.client loop (>= {TARGET_RATIO}) "
        f"{verdict(complete and ratio >= TARGET_RATIO)}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
