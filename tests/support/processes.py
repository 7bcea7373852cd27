"""Process control for the tests and the benchmarks: free ports, waiting, and
stopping a process with everything it forked."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CKAN_CLI = str(Path(sys.executable).with_name("ckan"))


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], object], timeout: float, interval: float = 0.05
) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout`` passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def accepts_connections(port: int, timeout: float = 0.1) -> bool:
    """Whether something on 127.0.0.1 accepts a connection on ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout).close()
    except OSError:
        return False
    return True


def descendants(pid: int) -> list[int]:
    """Every process forked under ``pid``, children first."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in map(int, children) for d in (c, *descendants(c))]


def stop_process(
    process: subprocess.Popen,
    grace: float = 10.0,
    *,
    group: bool = True,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """End ``process``: ``first`` (SIGTERM), then SIGKILL after ``grace``
    seconds; with ``grace`` 0, SIGKILL at once.

    With ``group`` the signals go to its process group (it was started with
    ``start_new_session=True``), so what it forked ends too: CKAN 2.12's
    worker forks an RQ scheduler that would otherwise keep moving jobs around
    for later tests. A stock worker's work horse runs in a process group of
    its own (RQ calls ``setsid`` or ``setpgrp``): it is killed by its pid,
    with SIGKILL, as a service manager kills what is left in the unit's
    control group. Without
    ``group``, only the process itself is signalled (a stock worker told to
    stop lets its work horse finish).
    """
    forked = descendants(process.pid) if group else []

    def send(signum: signal.Signals) -> None:
        horses = [*forked, *descendants(process.pid)] if group else []
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        if signum == signal.SIGKILL:
            for pid in horses:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    if grace > 0:
        if process.poll() is None:
            send(first)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    send(signal.SIGKILL)
    process.wait()
