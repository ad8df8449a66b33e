"""The probe try-lock and the checks that the data dir and the Redis and etcd stores are
really used: fencing tokens, the horizon file, the store's keys and calls, /metrics."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from . import etcdapi
from .common import Fail
from .config import (
    DATADIR_SERVERS, ETCD_SERVERS, ETCD_STORE_SERVERS, FENCE_HEADER, PROBE_ETCD_KEY,
    PROBE_EXPIRY_S, PROBE_OWNER, PROBE_REDIS_KEY, PROBE_RESOURCE, PROBE_STORE, PROBE_TIMEOUT_S,
    REDIS_STORE_SERVERS, STORE_REDIS_NAME,
)
from .rediscli import redis_cli, redis_keys

# How long the leases revoked after the last answers of a run may take to go.
ETCD_SETTLE_S = 5.0


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
    go through its redis-server (check_redis_store), dlockd-etcd's through its etcd, whose
    create revision is its fencing token (check_etcd_store)."""
    if server.name in REDIS_STORE_SERVERS:
        fence = check_redis_store(server, timeout)
    elif server.name in ETCD_STORE_SERVERS:
        return check_etcd_store(server, timeout)
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


def etcd_of(server):
    """The etcd cluster `server` speaks to: itself (an etcd anchor), its companion
    (dlockd-etcd), or None for the others."""
    if server.name in ETCD_SERVERS:
        return server
    if server.name in ETCD_STORE_SERVERS:
        for companion in server.companions:
            if companion.name == ETCD_STORE_SERVERS[server.name]:
                return companion
        raise Fail(f"{server.name} was started without its etcd cluster")
    return None


def check_etcd_store(server, timeout):
    """dlockd-etcd's probe: its fresh cluster holds no lock key before it; the grant must
    create exactly PROBE_ETCD_KEY, holding the probe's owner under a lease of at most the
    probe's expiry, and carry its create revision as Dapr-Lock-Fence; the unlock must delete
    it and its lease. Otherwise dlockd does not keep the store in this etcd (or not under the
    keys the anchor's client uses), and the comparison stops. Returns the fence."""
    cluster = etcd_of(server)
    port = cluster.port
    what = f"{server.name}: the probe try-lock through its etcd on 127.0.0.1:{port}"
    if etcdapi.count_prefix(port, "lock||") != 0:
        raise Fail(f"{what}: the fresh cluster holds lock keys before the probe")
    found = {}

    def after_grant():
        kv = etcdapi.key_value(port, PROBE_ETCD_KEY)
        if kv is None or etcdapi.count_prefix(port, "lock||") != 1:
            raise Fail(f"{what}: after the grant {PROBE_ETCD_KEY!r} is not the one lock key "
                       f"({kv})\n{server.log_tail()}")
        owner, lease, created = kv
        if owner != PROBE_OWNER:
            raise Fail(f"{what}: {PROBE_ETCD_KEY} holds {owner!r}, not {PROBE_OWNER!r}")
        ttl = etcdapi.lease_ttl(port, lease) if lease else -1
        if not 0 < ttl <= PROBE_EXPIRY_S:
            raise Fail(f"{what}: {PROBE_ETCD_KEY} is on lease {lease} with TTL {ttl}, not the "
                       f"probe's expiry of {PROBE_EXPIRY_S} s")
        found["created"] = created

    def after_unlock():
        if etcdapi.count_prefix(port, "lock||") != 0:
            raise Fail(f"{what}: the unlock left {PROBE_ETCD_KEY} in etcd")

    fence = probe_fence(server, timeout, after_grant, after_unlock)
    if fence is None or fence != str(found.get("created")):
        raise Fail(f"{what}: the grant's Dapr-Lock-Fence is {fence!r}, not the key's create "
                   f"revision {found.get('created')}")
    return fence


def etcd_revision(server):
    """The revision of `server`'s etcd cluster (etcd_of), None for servers without one."""
    cluster = etcd_of(server)
    return None if cluster is None else etcdapi.revision(cluster.port)


def dlockd_answers(server, what):
    """{(route, outcome): count} of dlockd's /metrics (dlockd_requests_total)."""
    counts = {}
    for line in metrics_text(server, what).splitlines():
        c = re.match(r'dlockd_requests_total\{route="(\w+)",outcome="(\w+)"\}\s+(\d+)', line)
        if c:
            counts[(c.group(1), c.group(2))] = int(c.group(3))
    return counts


# The answers that are wrong in the uncontended workload, where every lock is of a free
# resource and every unlock of the client's own lock.
WRONG_ANSWERS = [("lock", "refused"), ("unlock", "lock_does_not_exist"),
                 ("unlock", "lock_belongs_to_others")]


def wrong_answers(server, what):
    """How many of dlockd-etcd's lock and unlock answers so far were wrong for the
    uncontended workload (a lock refused, an unlock of a lock not found or someone else's);
    None for other servers. The client counts such answers only under --check."""
    if server.name not in ETCD_STORE_SERVERS:
        return None
    counts = dlockd_answers(server, what)
    return sum(counts.get(k, 0) for k in WRONG_ANSWERS)


def check_etcd_writes(server, before, requests, wrong, what):
    """Fails unless `server`'s etcd cluster wrote at least one revision per request the
    client counted since `before` (etcd_revision then): a granted lock puts its key, a
    released unlock deletes it; an unlock that found nothing (`wrong`) writes nothing."""
    if before is None:
        return
    done = etcd_revision(server) - before
    if done < requests - (wrong or 0):
        raise Fail(f"{what}: its etcd's revision moved {done} for {requests} requests "
                   f"({wrong or 0} answered wrong): not every request went through etcd")


def check_etcd_clean(server, what, settle_s=ETCD_SETTLE_S):
    """Fails unless `server`'s etcd cluster holds no lock key and no lease within `settle_s`
    after a run: every lock was unlocked and every lease revoked (the revokes trail the
    answers, in dlockd and in the client alike)."""
    cluster = etcd_of(server)
    if cluster is None:
        return
    deadline = time.monotonic() + settle_s
    while True:
        keys, held = etcdapi.count_prefix(cluster.port, "lock||"), etcdapi.leases(cluster.port)
        if keys == 0 and held == 0:
            return
        if time.monotonic() > deadline:
            raise Fail(f"{what}: {keys} lock keys and {held} leases left in its etcd "
                       f"{settle_s:g} s after the run")
        time.sleep(0.1)


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
    """Fails unless dlockd-redis's (or dlockd-etcd's) /metrics count no lock or unlock
    answered with an error and no other 5xx since it started: the load generator counts a
    500 as a refusal, not an error, so a store that failed requests would otherwise pass for
    a fast one."""
    if server.name not in REDIS_STORE_SERVERS and server.name not in ETCD_STORE_SERVERS:
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
    """The --data-dir on `server`'s command line, or None (and None for an etcd server,
    whose members take a --data-dir of their own)."""
    if server.name in ETCD_SERVERS or "--data-dir" not in server.argv:
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


def etcd_version():
    """`etcd --version`'s first line, or "unknown"."""
    try:
        out = subprocess.run([shutil.which("etcd") or "etcd", "--version"], capture_output=True,
                             text=True, timeout=PROBE_TIMEOUT_S, check=False).stdout
    except OSError:
        return "unknown"
    return (out.splitlines() or ["unknown"])[0].strip()


def etcd_note(workdir):
    """The section's line about the etcd members: which etcd, and the disk its WAL is
    fsynced to."""
    fstype, dev = filesystem_of(workdir)
    return (f"{etcd_version()}; every member's data dir (its WAL, fsynced at every commit) a "
            f"new directory in the run's temporary directory under {Path(workdir).parent} "
            f"({fstype} on {dev})")


def data_dir_note(workdir):
    """The section's line about dlockd-datadir, once every run of it passed the checks."""
    fstype, dev = filesystem_of(workdir)
    return (f"`--data-dir` a new empty directory per start, in the run's temporary directory "
            f"under {Path(workdir).parent} ({fstype} on {dev}); every start's probe try-lock "
            "was granted with a `Dapr-Lock-Fence` header (the other dlockd servers' without), "
            "and its horizon file was rewritten during every measured run")
