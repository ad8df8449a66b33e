"""etcd's JSON gateway (the v3 API over HTTP on a member's client port), for what compare
reads from its etcd clusters: health, the store's revision, a key, the keys under a prefix,
the leases, which member leads. No etcdctl needed."""

import base64
import json
import urllib.request

from .common import Fail
from .config import PROBE_TIMEOUT_S


def b64(raw):
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


def prefix_end(prefix):
    """The end of the range of keys that start with `prefix` (bytes): its last byte that is
    not 0xff, plus one."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xff:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def post(port, path, body, timeout=PROBE_TIMEOUT_S):
    """The answer (a dict) of the gateway's `path` on the member at 127.0.0.1:`port`."""
    url = f"http://127.0.0.1:{port}{path}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return json.loads(answer.read().decode("utf-8", "replace"))
    except (OSError, ValueError) as e:
        raise Fail(f"etcd on 127.0.0.1:{port}: {path}: {e}") from None


def healthy(port, timeout=1.0):
    """Whether the member says it is healthy (it has a leader and answers): GET /health."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as a:
            return json.loads(a.read().decode()).get("health") == "true"
    except (OSError, ValueError):
        return False


def revision(port):
    """The key-value store's revision: each Put and each deletion of a key adds one."""
    return int(post(port, "/v3/kv/range", {"key": b64("\0")})["header"]["revision"])


def key_value(port, key):
    """(value, lease, create revision) of `key`, or None when it does not exist."""
    kvs = post(port, "/v3/kv/range", {"key": b64(key)}).get("kvs") or []
    if not kvs:
        return None
    kv = kvs[0]
    return (base64.b64decode(kv.get("value", "")).decode("utf-8", "replace"),
            int(kv.get("lease", 0)), int(kv.get("create_revision", 0)))


def count_prefix(port, prefix):
    """How many keys start with `prefix`."""
    raw = prefix.encode()
    answer = post(port, "/v3/kv/range", {"key": b64(raw), "range_end": b64(prefix_end(raw)),
                                         "count_only": True})
    return int(answer.get("count", 0))


def leases(port):
    """How many leases the cluster holds."""
    return len(post(port, "/v3/lease/leases", {}).get("leases") or [])


def lease_ttl(port, lease):
    """The seconds `lease` has left (-1: it has ended)."""
    return int(post(port, "/v3/lease/timetolive", {"ID": lease}).get("TTL", -1))


def leads(port):
    """Whether the member on `port` is its cluster's leader."""
    status = post(port, "/v3/maintenance/status", {})
    return status.get("leader") == status.get("header", {}).get("member_id")
