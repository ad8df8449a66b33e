"""The probe try-lock and the checks that the data dir and the Redis store are really
used: fencing tokens, the horizon file, the store's keys and calls, /metrics."""

import json
import os
import re
import urllib.request
from pathlib import Path

from .common import Fail
from .config import (
    DATADIR_SERVERS, FENCE_HEADER, PROBE_EXPIRY_S, PROBE_OWNER, PROBE_REDIS_KEY, PROBE_RESOURCE,
    PROBE_STORE, PROBE_TIMEOUT_S, REDIS_STORE_SERVERS, STORE_REDIS_NAME,
)
from .rediscli import redis_cli, redis_keys


def read_http_answer(sock, what):
    """One HTTP answer from `sock`, framed by its Content-Length: (status line, {lower-case
    header name: value}, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise Fail(f"{what}: the connection closed before a whole answer: {buf!r}")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        raise Fail(f"{what}: an answer without a Content-Length: {head!r}") from None
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise Fail(f"{what}: the connection closed in the body: {head!r}")
        body += chunk
    return lines[0], headers, body[:length]


def probe_fence(server, timeout, after_grant=None, after_unlock=None, store=PROBE_STORE):
    """One try-lock on PROBE_RESOURCE and its unlock, on one connection, on the dlockd server
    `server` (anything with a name, a target, a host and connect(timeout): an external
    server too): a probe that its data dir is on (dlockd-datadir) or off (the others).
    Returns the grant's Dapr-Lock-Fence value (None without the header). Leaves no lease.
    `after_grant` and `after_unlock`, if given, are called (without arguments) once the grant
    and once the unlock's answer arrived: dlockd-redis's look into its redis-server. `store`:
    the lock store in the URL."""
    what = f"{server.name} on {server.target}: the probe try-lock"

    def request(op, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        return (f"POST /v1.0-alpha1/{op}/{store} HTTP/1.1\r\n"
                f"Host: {server.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    try:
        with server.connect(timeout) as sock:
            sock.sendall(request("lock", {"resourceId": PROBE_RESOURCE,
                                          "lockOwner": PROBE_OWNER,
                                          "expiryInSeconds": PROBE_EXPIRY_S}))
            status, headers, body = read_http_answer(sock, what)
            if not status.startswith("HTTP/1.1 200") or json.loads(body) != {"success": True}:
                raise Fail(f"{what} was not granted: {status} {body!r}")
            fence = headers.get(FENCE_HEADER)
            if after_grant is not None:
                after_grant()
            sock.sendall(request("unlock", {"resourceId": PROBE_RESOURCE,
                                            "lockOwner": PROBE_OWNER}))
            status, _, body = read_http_answer(sock, f"{what}'s unlock")
            if not status.startswith("HTTP/1.1 200") or json.loads(body) != {"status": 0}:
                raise Fail(f"{what}'s unlock failed: {status} {body!r}")
            if after_unlock is not None:
                after_unlock()
    except OSError as e:
        raise Fail(f"{what}: {e}") from None
    except ValueError as e:
        raise Fail(f"{what}: an answer that is not the expected JSON: {e}") from None
    return fence


def check_probe(server, timeout):
    """Fails unless `server`'s probe grant carries a fencing token exactly when it runs with
    a data dir: the comparison must be of data dir on against off. dlockd-redis's probe must
    go through its redis-server (check_redis_store)."""
    if server.name in REDIS_STORE_SERVERS:
        fence = check_redis_store(server, timeout)
    else:
        fence = probe_fence(server, timeout)
    if server.name in DATADIR_SERVERS:
        if fence is None or not fence.isdigit() or int(fence) < 1:
            raise Fail(f"{server.name}: the probe try-lock was granted without a valid "
                       f"Dapr-Lock-Fence header ({fence!r}): restart safety is not on\n"
                       f"{server.log_tail()}")
        if "restart safety on" not in server.log_tail(50):
            raise Fail(f"{server.name}: its start-up lines do not say restart safety is on\n"
                       f"{server.log_tail()}")
    elif fence is not None:
        raise Fail(f"{server.name}: the probe try-lock came back with Dapr-Lock-Fence: "
                   f"{fence} although it runs without --data-dir")
    return fence


def store_redis_of(server):
    """dlockd-redis's own redis-server (its companion)."""
    for companion in server.companions:
        if companion.name == STORE_REDIS_NAME:
            return companion
    raise Fail(f"{server.name} was started without its redis-server")


def check_redis_store(server, timeout):
    """dlockd-redis's probe: its redis-server starts empty, the probe try-lock must create
    exactly PROBE_REDIS_KEY there, holding the probe's owner with the probe's expiry, and the
    unlock must remove it. Otherwise dlockd does not keep the store in Redis (or not under
    daprd's key), and the comparison stops. Returns the grant's Dapr-Lock-Fence (None
    without the header: check_probe requires that)."""
    port = store_redis_of(server).port
    what = f"{server.name}: the probe try-lock through its redis-server on 127.0.0.1:{port}"

    def keys():
        return redis_cli(port, "--scan").split()

    if redis_keys(port) != 0:
        raise Fail(f"{what}: the fresh redis-server holds keys before the probe: {keys()}")

    def after_grant():
        found = keys()
        if found != [PROBE_REDIS_KEY]:
            raise Fail(f"{what}: after the grant the keys are {found}, not only "
                       f"{PROBE_REDIS_KEY!r}\n{server.log_tail()}")
        owner = redis_cli(port, "GET", PROBE_REDIS_KEY).strip()
        ttl = redis_cli(port, "TTL", PROBE_REDIS_KEY).strip()
        if owner != PROBE_OWNER:
            raise Fail(f"{what}: {PROBE_REDIS_KEY} holds {owner!r}, not the owner "
                       f"{PROBE_OWNER!r}")
        if not ttl.isdigit() or not 0 < int(ttl) <= PROBE_EXPIRY_S:
            raise Fail(f"{what}: {PROBE_REDIS_KEY} has TTL {ttl!r}, not the probe's expiry "
                       f"of {PROBE_EXPIRY_S} s")

    def after_unlock():
        found = keys()
        if found:
            raise Fail(f"{what}: the unlock left the keys {found}")

    return probe_fence(server, timeout, after_grant, after_unlock)


def store_redis_calls(server):
    """SET plus EVALSHA calls so far on dlockd-redis's redis-server (INFO commandstats),
    None for other servers: dlockd sends one of them per try-lock and per unlock."""
    if server.name not in REDIS_STORE_SERVERS:
        return None
    out = redis_cli(store_redis_of(server).port, "INFO", "commandstats")
    calls = 0
    for cmd in ("set", "evalsha"):
        m = re.search(rf"^cmdstat_{cmd}:calls=(\d+)", out, re.M)
        if m:
            calls += int(m.group(1))
    return calls


def check_store_redis_calls(server, before, requests, what):
    """Fails unless dlockd-redis's redis-server got a SET or EVALSHA for each of the
    `requests` the client counted since `before` (store_redis_calls then)."""
    if before is None:
        return
    done = store_redis_calls(server) - before
    if done < requests:
        raise Fail(f"{what}: its redis-server received {done} SET and EVALSHA calls for "
                   f"{requests} requests: not every request went through Redis")


def metrics_text(server, what):
    """The text of dlockd's /metrics, at the address its start-up lines name."""
    m = re.search(r" metrics on (http://\S+/metrics)", server.log_tail(50))
    if not m:
        raise Fail(f"{what}: its start-up lines name no metrics address\n{server.log_tail()}")
    try:
        with urllib.request.urlopen(m.group(1), timeout=PROBE_TIMEOUT_S) as answer:
            return answer.read().decode("utf-8", "replace")
    except OSError as e:
        raise Fail(f"{what}: cannot read {m.group(1)}: {e}") from None


def check_no_errors_answered(server, what):
    """Fails unless dlockd-redis's /metrics count no lock or unlock answered with an error and
    no other 5xx since it started: the load generator counts a 500 as a refusal, not an
    error, so a Redis store that failed requests would otherwise pass for a fast one."""
    if server.name not in REDIS_STORE_SERVERS:
        return
    text = metrics_text(server, what)
    bad = {}
    for line in text.splitlines():
        c = re.match(r'dlockd_requests_total\{route="(\w+)",outcome="(\w+)"\}\s+(\d+)', line)
        if c and (c.group(2) == "error" or c.group(2) == "5xx") and int(c.group(3)):
            bad[f"{c.group(1)} {c.group(2)}"] = int(c.group(3))
    if bad:
        raise Fail(f"{what}: dlockd answered errors: {bad}\n{server.log_tail()}")


def data_dir_of(server):
    """The --data-dir on `server`'s command line, or None."""
    if "--data-dir" not in server.argv:
        return None
    return Path(server.argv[server.argv.index("--data-dir") + 1])


def horizon_mtime(server):
    """The modification time (ns) of `server`'s horizon file, None without a data dir."""
    ddir = data_dir_of(server)
    if ddir is None:
        return None
    try:
        return (ddir / "horizon").stat().st_mtime_ns
    except OSError as e:
        raise Fail(f"{server.name}: no horizon file in its data dir {ddir}: {e}") from None


def check_horizon_moved(server, before, what):
    """Fails unless `server`'s horizon file was rewritten since `before` (its mtime then): a
    steady load moves the horizon about twice a second, so a measured run without a write
    did not exercise the data dir."""
    if before is None:
        return
    after = horizon_mtime(server)
    if after <= before:
        raise Fail(f"{what}: the horizon file in {data_dir_of(server)} was not rewritten during "
                   "the measured run: the persister did not move the horizon")


def filesystem_of(path):
    """(type, device) of the mount that holds `path`, from /proc/self/mounts."""
    real = os.path.realpath(path)
    best = ("", "unknown", "unknown")
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        dev, mnt, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = (mnt, fstype, dev)
    return best[1], best[2]


def data_dir_note(workdir):
    """The section's line about dlockd-datadir, once every run of it passed the checks."""
    fstype, dev = filesystem_of(workdir)
    return (f"`--data-dir` a new empty directory per start, in the run's temporary directory "
            f"under {Path(workdir).parent} ({fstype} on {dev}); every start's probe try-lock "
            "was granted with a `Dapr-Lock-Fence` header (the other dlockd servers' without), "
            "and its horizon file was rewritten during every measured run")
