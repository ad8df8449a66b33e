"""Leases held on purpose: the fill (churn over as many resources as requests) and the
sampler of RSS and CPU during a run."""

import shlex
import threading
import time

from .client import loadgen_argv, run_loadgen
from .common import Fail
from .config import (
    DLOCKD_DEFAULT_MAX_LEASES, FILL_CPU, FILL_DEPTH, FILL_MAX_CONNECTIONS, LOADGEN_COUNT_TIMEOUT_S,
    SAMPLE_INTERVAL_S,
)
from .fmt import fmt_mib
from .procs import clock_ticks, cpu_ticks, rss_kb
from .servers import protocol_of


def fill_connections(leases):
    """The most connections, up to FILL_MAX_CONNECTIONS, that share `leases` out evenly."""
    return max(c for c in range(1, FILL_MAX_CONNECTIONS + 1) if leases % c == 0)


def dlockd_lease_flags(leases):
    """dlockd's extra flags for holding `leases` leases besides a measured run's few."""
    if leases * 2 <= DLOCKD_DEFAULT_MAX_LEASES:
        return []
    return ["--max-leases", str(leases * 2)]


def fill_argv(bins, port, protocol, leases, expiry, connections=None):
    """The fill's client command line; `connections` defaults to fill_connections(leases)."""
    if connections is None:
        connections = fill_connections(leases)
    return loadgen_argv(bins, port, protocol, "churn", connections, FILL_DEPTH, FILL_CPU,
                        ("requests", leases), False, resources=leases, expiry=expiry)


def fill(bins, server, leases, expiry, what):
    """Locks `leases` distinct resources on `server`, each once, with `expiry` seconds.
    Returns (the client's result, start, end), start and end on the monotonic clock: every
    lease was granted between them. Fails unless every lock was granted."""
    argv = fill_argv(bins, server.port, protocol_of(server.name), leases, expiry)
    start = time.monotonic()
    result = run_loadgen(argv, LOADGEN_COUNT_TIMEOUT_S, f"{what} (fill)")
    end = time.monotonic()
    server.check_alive()
    if result.get("grants") != leases:
        raise Fail(f"{what}: the fill was granted {result.get('grants')} of {leases} locks, so "
                   f"the server does not hold {leases} leases: {shlex.join(argv)}")
    return result, start, end



class Sampler:
    """Reads a server's RSS and CPU time every SAMPLE_INTERVAL_S on a thread, from `start` (a
    monotonic instant) until stopped: where in a run the server worked and what it held."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []  # (seconds since start, RSS kB or None, CPU ticks)
        self.done = threading.Event()
        self.thread = None

    def start(self, start):
        def run():
            k = 0
            while True:
                now = time.monotonic()
                self.samples.append((now - start, rss_kb(self.pid), cpu_ticks(self.pid)))
                k += 1
                if self.done.wait(max(0.0, start + k * SAMPLE_INTERVAL_S - time.monotonic())):
                    return

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self):
        self.done.set()
        if self.thread is not None:
            self.thread.join()

    def cpu_percent(self):
        """The server's CPU use between consecutive samples, in per cent of one CPU."""
        out = []
        for (t0, _, c0), (t1, _, c1) in zip(self.samples, self.samples[1:]):
            if t1 > t0:
                out.append((c1 - c0) / clock_ticks() / (t1 - t0) * 100)
        return out

    def rss_mib(self):
        return [fmt_mib(kb) for _, kb, _ in self.samples]
