"""--external NAME=ADDR[@PID[,PID...]]: a Dapr-compatible server that is already running (a
daprd sidecar, a dlockd started by hand) measured beside the others, with the same client in
the same rounds. compare never starts, stops or pins it: it only sends it the client's
requests (and one probe try-lock before the rounds), and reads its CPU time and context
switches from /proc/PID when its PIDs are given."""

import os
import re
from pathlib import Path

from .common import Fail
from .config import (
    ALL_SERVERS, BASE_SERVERS, EXTERNAL_DEFAULT_STORE, MAX_UNIX_PATH_BYTES, PROBE_TIMEOUT_S,
    STORE_REDIS_NAME,
)
from .probes import probe_fence
from .procs import cpu_ticks, read_proc, voluntary_switches
from .servers import connect_to

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
# What the load generator and the probe put into the request line as the store.
STORE_RE = re.compile(r"[!-~]{1,256}")


class External:
    """An external server: what measure and the probe need of a server, without a process
    of compare's own. `pids` may be empty: its CPU time is then not measured."""

    def __init__(self, name, target, pids=(), store=EXTERNAL_DEFAULT_STORE):
        self.name = name
        self.target = target
        self.pids = list(pids)
        self.store = store
        self.companions = []
        self.says_driver = False

    @property
    def host(self):
        """The Host header of an HTTP request to it, as the load generator sends it."""
        return "localhost" if self.target.startswith("unix:") else self.target

    def connect(self, timeout):
        return connect_to(self.target, timeout)

    def alive(self):
        """The PIDs that no longer run."""
        return [pid for pid in self.pids if read_proc(f"/proc/{pid}/stat") is None]

    def check_alive(self, what=None):
        gone = self.alive()
        if gone:
            raise Fail(f"{what or self.name}: the external server's process "
                       f"{', '.join(map(str, gone))} is gone (compare did not start it and "
                       "cannot restart it)")

    def cpu_ticks(self):
        """(utime + stime of its processes, 0), or None without PIDs."""
        if not self.pids:
            return None
        return sum(cpu_ticks(pid) for pid in self.pids), 0

    def sleeps(self):
        if not self.pids:
            return None
        return sum(voluntary_switches(pid) for pid in self.pids)

    def cpus_allowed(self):
        """Each PID's Cpus_allowed_list: the CPUs it may run on (compare does not pin it)."""
        out = {}
        for pid in self.pids:
            status = read_proc(f"/proc/{pid}/status")
            m = status and re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
            out[pid] = m.group(1) if m else "?"
        return out

    def describe(self):
        """The section's words on it."""
        if self.pids:
            cpus = "; ".join(f"PID {pid} on CPUs {c}" for pid, c in self.cpus_allowed().items())
            cpu = f"server CPU from /proc of {cpus}"
        else:
            cpu = "no PID given: server CPU and sleeps not measured (–)"
        return f"`{self.name}` at `{self.target}`, store `{self.store}`, {cpu}"


def parse_address(addr):
    """`host:port` or `unix:PATH` checked; returns it, or raises ValueError with the reason."""
    if addr.startswith("unix:"):
        path = addr[len("unix:"):]
        if not path or "\0" in path:
            raise ValueError("unix:PATH needs a path")
        if len(os.fsencode(path)) > MAX_UNIX_PATH_BYTES:
            raise ValueError(f"a Unix socket path holds at most {MAX_UNIX_PATH_BYTES} bytes")
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not host or any(c.isspace() for c in addr):
        raise ValueError("expected HOST:PORT or unix:PATH")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{port!r} is not a port (1 to 65535)")
    return addr


def parse_external(spec):
    """`NAME=ADDR`, `NAME=ADDR@PID` or `NAME=ADDR@PID,PID`: (name, address, [pids]). Raises
    ValueError with the reason. A trailing `@` followed by digits (and commas) names the
    PIDs; anything else after the `=` is the address."""
    name, sep, rest = spec.partition("=")
    if not sep:
        raise ValueError("expected NAME=ADDR (ADDR: HOST:PORT or unix:PATH, optionally @PID)")
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"the name {name!r} is not a name (letters, digits, . _ -; at most "
                         "40; starting with a letter or digit)")
    addr, at, pids = rest.rpartition("@")
    if at and re.fullmatch(r"\d+(,\d+)*", pids):
        pid_list = [int(p) for p in pids.split(",")]
    elif at and not pids:
        raise ValueError("@ with no PID after it (did $(pgrep ...) find nothing?)")
    else:
        addr, pid_list = rest, []
    return name, parse_address(addr), pid_list


def externals_from_args(specs, store_specs):
    """The External servers of --external and --external-store, checked. Raises ValueError
    with the reason for a bad one."""
    known = set(ALL_SERVERS) | set(BASE_SERVERS) | {STORE_REDIS_NAME}
    found = {}
    for spec in specs or []:
        try:
            name, addr, pids = parse_external(spec)
        except ValueError as e:
            raise ValueError(f"--external {spec!r}: {e}") from None
        if name in known:
            raise ValueError(f"--external {spec!r}: {name!r} is the name of a server compare "
                             "starts itself; give the external server another name")
        if name in found:
            raise ValueError(f"--external {spec!r}: the name {name!r} is given twice")
        for pid in pids:
            if not Path(f"/proc/{pid}").exists():
                raise ValueError(f"--external {spec!r}: no process {pid} is running")
        found[name] = External(name, addr, pids)
    for spec in store_specs or []:
        name, sep, store = spec.partition("=")
        if not sep:
            raise ValueError(f"--external-store {spec!r}: expected NAME=STORE")
        if name not in found:
            raise ValueError(f"--external-store {spec!r}: no --external is named {name!r}")
        if not STORE_RE.fullmatch(store) or any(c in store for c in "/?#"):
            raise ValueError(f"--external-store {spec!r}: {store!r} is not a store name "
                             "(visible ASCII without / ? #)")
        found[name].store = store
    return list(found.values())


def probe_externals(externals, timeout=PROBE_TIMEOUT_S):
    """One try-lock and its unlock on each external server, before anything is built or
    measured: an address nothing answers on, a store it does not have, an answer that is not
    the Dapr lock API's stop the comparison here, with the reason."""
    for ext in externals:
        ext.check_alive(f"--external {ext.name}")
        try:
            probe_fence(ext, timeout, store=ext.store)
        except Fail as e:
            raise Fail(f"--external {ext.name}={ext.target}: the probe try-lock and unlock on "
                       f"store {ext.store!r} failed (compare does not start external servers: "
                       "it must be running and serve the Dapr lock API there; "
                       f"--external-store {ext.name}=STORE names its lock store): {e}") from None
