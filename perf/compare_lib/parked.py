"""--parked-waiters: what acquires that wait cost dlockd while they wait: server CPU time
and wake-ups over a window with W waiters parked against the same window on an idle server,
and memory with the W waiters parked against the same W connections open and idle."""

import json
import re
import resource
import socket
import statistics
import time

from .common import Fail, log
from .config import (
    PARKED_BYTES_TARGET, PARKED_CPU_TOLERANCE, PARKED_READY_TIMEOUT_S, PARKED_RESOURCES, PARKED_SETTLE_S,
    PARKED_WAIT_MS, PROBE_STORE, READY_TIMEOUT_S, SERVER_CPU,
)
from .probes import check_probe, metrics_text, read_http_answer
from .procs import clock_ticks, free_port, rss_anon_kb, run_ns
from .servers import new_server

PROBE_TIMEOUT_S = 10.0
HOLDER = "perf-parked-holder"


def parked_flags(waiters):
    """dlockd's flags for `waiters` parked acquires on their own connections, plus the
    holder's and the probes': the connection bound (default 10,000) and, above its default,
    the waiter bound."""
    flags = ["--max-connections", str(waiters + 100)]
    if waiters > 100_000:
        flags += ["--max-waiters", str(waiters + 100)]
    return flags


def resource_of(i):
    """The resource waiter `i` waits for: one of PARKED_RESOURCES, all held by the holder."""
    return f"perf-parked-{i % PARKED_RESOURCES}"


def request(port, op, body):
    """One HTTP/1.1 request to dlockd's lock API, as bytes."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST /v1.0-alpha1/{op} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


def raise_fd_limit(waiters):
    """Raises this process's open-file limit (inherited by the servers it starts) so that
    `waiters` connections fit on each side, or fails saying what is missing."""
    need = waiters + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise Fail(f"--parked-waiters {waiters} needs {need} open files per process; the hard "
                   f"limit is {hard} (raise it, e.g. `ulimit -Hn {need}` as root)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def waiters_parked(server, what):
    """dlockd_waiters summed over the shards, from /metrics."""
    text = metrics_text(server, what)
    return sum(int(m.group(1)) for m in
               re.finditer(r"^dlockd_waiters\{[^}]*\}\s+(\d+)", text, re.M))


def window(server, seconds):
    """The server's CPU time over `seconds` (ns from schedstat, and clock ticks from stat),
    its voluntary context switches (wake-ups), and its RssAnon at the end (kB)."""
    ns0, ticks0, sleeps0 = run_ns(server.proc.pid), server.cpu_ticks()[0], server.sleeps()
    time.sleep(seconds)
    ns1, ticks1, sleeps1 = run_ns(server.proc.pid), server.cpu_ticks()[0], server.sleeps()
    return {"ns": ns1 - ns0, "ticks": ticks1 - ticks0, "wakeups": sleeps1 - sleeps0,
            "rss_anon": rss_anon_kb(server.proc.pid)}


def answer_of(sock, what):
    status, _, body = read_http_answer(sock, what)
    if not status.startswith("HTTP/1.1 200"):
        raise Fail(f"{what}: {status} {body!r}")
    return json.loads(body)


def parked_one(args, bins, workdir, rnd):
    """One round on a fresh dlockd: the idle window, the idle connections' window, the
    parked waiters' window. Returns what was read."""
    waiters = args.waiters
    port = free_port()
    server = new_server("dlockd", bins, port, workdir, READY_TIMEOUT_S,
                        dlockd_flags=parked_flags(waiters))
    what = f"parked waiters, round {rnd + 1}"
    socks = []
    rec = {}
    try:
        server.start()
        check_probe(server, PROBE_TIMEOUT_S)
        time.sleep(PARKED_SETTLE_S)
        rec["idle"] = window(server, args.duration)
        # The holder keeps every resource the waiters will wait for.
        holder = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S)
        socks.append(holder)
        for k in range(PARKED_RESOURCES):
            holder.sendall(request(port, f"lock/{PROBE_STORE}",
                                   {"resourceId": resource_of(k), "lockOwner": HOLDER,
                                    "expiryInSeconds": 3600}))
            if answer_of(holder, f"{what}: the holder's lock") != {"success": True}:
                raise Fail(f"{what}: the holder was not granted {resource_of(k)}")
        # W connections, each answered one try-lock of its resource (refused: it is held),
        # so each has been accepted and has served a request of an acquire's size.
        started = time.monotonic()
        for i in range(waiters):
            s = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S)
            socks.append(s)
            s.sendall(request(port, f"lock/{PROBE_STORE}",
                              {"resourceId": resource_of(i), "lockOwner": f"waiter-{i}",
                               "expiryInSeconds": 10}))
            if answer_of(s, f"{what}: connection {i}'s try-lock") != {"success": False}:
                raise Fail(f"{what}: connection {i}'s try-lock of a held resource was granted")
        log(f"{what}: {waiters} connections open in {time.monotonic() - started:.1f} s")
        time.sleep(PARKED_SETTLE_S)
        rec["connections"] = window(server, args.duration)
        # Each of them now waits: one acquire on its resource, answered only at its deadline.
        for i, s in enumerate(socks[1:]):
            s.sendall(request(port, f"lock/{PROBE_STORE}/acquire",
                              {"resourceId": resource_of(i), "lockOwner": f"waiter-{i}",
                               "expiryInSeconds": 10, "waitTimeoutMs": PARKED_WAIT_MS}))
        deadline = time.monotonic() + PARKED_READY_TIMEOUT_S
        while (parked := waiters_parked(server, what)) != waiters:
            if time.monotonic() > deadline:
                raise Fail(f"{what}: dlockd counts {parked} waiters, not {waiters}")
            time.sleep(0.1)
        time.sleep(PARKED_SETTLE_S)
        rec["parked"] = window(server, args.duration)
        still = waiters_parked(server, what)
        if still != waiters:
            raise Fail(f"{what}: {still} waiters were left after the window, not {waiters}")
        for i, s in enumerate(socks[1:]):
            s.setblocking(False)
            try:
                data = s.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            raise Fail(f"{what}: waiter {i} was answered during the window ({data!r})")
        server.check_alive()
    except OSError as e:
        raise Fail(f"{what}: {e}") from None
    finally:
        for s in socks:
            s.close()
        server.stop()
    for key in ("idle", "connections", "parked"):
        if rec[key]["rss_anon"] is None:
            raise Fail(f"{what}: could not read RssAnon of dlockd")
    return rec


def parked_summary(recs, waiters):
    """Medians over the rounds: CPU ms and wake-ups per window, bytes per connection and per
    parked waiter."""
    med = statistics.median
    ms = 1000 / clock_ticks()
    out = {}
    for key in ("idle", "connections", "parked"):
        out[f"{key}_cpu_ms"] = med(r[key]["ns"] / 1e6 for r in recs)
        out[f"{key}_cpu_ms_max"] = max(r[key]["ns"] / 1e6 for r in recs)
        out[f"{key}_tick_ms"] = med(r[key]["ticks"] * ms for r in recs)
        out[f"{key}_wakeups"] = med(r[key]["wakeups"] for r in recs)
        out[f"{key}_rss_anon"] = med(r[key]["rss_anon"] for r in recs)
    per_conn = [(r["connections"]["rss_anon"] - r["idle"]["rss_anon"]) * 1024 / waiters
                for r in recs]
    per_waiter = [(r["parked"]["rss_anon"] - r["connections"]["rss_anon"]) * 1024 / waiters
                  for r in recs]
    out["bytes_per_connection"] = med(per_conn)
    out["bytes_per_waiter"] = med(per_waiter)
    out["bytes_per_waiter_min"] = min(per_waiter)
    out["bytes_per_waiter_max"] = max(per_waiter)
    return out


def parked_table(args, recs):
    w = args.waiters
    s = parked_summary(recs, w)
    mib = 1 / 1024
    lines = [
        f"### {w:,} parked acquires, {args.duration:g} s windows, dlockd 1 worker",
        "",
        "| window | server CPU ms (median) | max | the same in clock ticks, ms | wake-ups "
        "(median) | RssAnon MiB at its end (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"idle": "idle server, no client connection",
             "connections": f"{w:,} connections open, idle",
             "parked": f"{w:,} acquires parked, one per connection"}
    for key in ("idle", "connections", "parked"):
        lines.append(f"| {names[key]} | {s[key + '_cpu_ms']:.2f} | "
                     f"{s[key + '_cpu_ms_max']:.2f} | {s[key + '_tick_ms']:.0f} | "
                     f"{s[key + '_wakeups']:.0f} | {s[key + '_rss_anon'] * mib:.1f} |")
    lines += ["", "| round | idle: CPU ms / wake-ups | connections | parked | bytes per "
              "connection | bytes per parked waiter |", "|---:|---:|---:|---:|---:|---:|"]
    for k, r in enumerate(recs):
        cells = [f"{r[key]['ns'] / 1e6:.2f} / {r[key]['wakeups']}"
                 for key in ("idle", "connections", "parked")]
        conn = (r["connections"]["rss_anon"] - r["idle"]["rss_anon"]) * 1024 / w
        wait = (r["parked"]["rss_anon"] - r["connections"]["rss_anon"]) * 1024 / w
        lines.append(f"| {k + 1} | {' | '.join(cells)} | {conn:.0f} | {wait:.0f} |")
    cpu_ok = s["parked_cpu_ms"] <= s["idle_cpu_ms"] * (1 + PARKED_CPU_TOLERANCE)
    mem_ok = s["bytes_per_waiter"] < PARKED_BYTES_TARGET
    lines += [
        "",
        "| target | wanted | figure (median over the rounds) | met |",
        "|---|---|---:|---|",
        f"| server CPU over the window, {w:,} parked / idle server | no more than idle "
        f"(within {PARKED_CPU_TOLERANCE:.0%}) | "
        f"{s['parked_cpu_ms']:.2f} ms / {s['idle_cpu_ms']:.2f} ms "
        f"(wake-ups {s['parked_wakeups']:.0f} / {s['idle_wakeups']:.0f}) | "
        f"{'met' if cpu_ok else 'not met'} |",
        f"| memory per parked waiter beyond its connection (RssAnon) | < "
        f"{PARKED_BYTES_TARGET:,} bytes | {s['bytes_per_waiter']:.0f} bytes "
        f"({s['bytes_per_waiter_min']:.0f}–{s['bytes_per_waiter_max']:.0f}) | "
        f"{'met' if mem_ok else 'not met'} |",
    ]
    return "\n".join(lines)


def parked(args, bins, workdir):
    raise_fd_limit(args.waiters)
    recs = []
    for rnd in range(args.rounds):
        rec = parked_one(args, bins, workdir, rnd)
        recs.append(rec)
        w = args.waiters
        log(f"[{rnd + 1}/{args.rounds}] parked waiters: CPU ms idle "
            f"{rec['idle']['ns'] / 1e6:.2f}, connections {rec['connections']['ns'] / 1e6:.2f}, "
            f"parked {rec['parked']['ns'] / 1e6:.2f}; "
            f"wake-ups {rec['idle']['wakeups']}, {rec['connections']['wakeups']}, "
            f"{rec['parked']['wakeups']}; RssAnon {rec['idle']['rss_anon']} -> "
            f"{rec['connections']['rss_anon']} -> {rec['parked']['rss_anon']} kB "
            f"({(rec['parked']['rss_anon'] - rec['connections']['rss_anon']) * 1024 / w:.0f} "
            "B/waiter)")
    head = [
        f"- runs: {args.rounds} round(s), each on a fresh dlockd (`--workers 1 "
        f"{' '.join(parked_flags(args.waiters))}`, metrics on, on CPU {SERVER_CPU}); three "
        f"windows of {args.duration:g} s on it, each {PARKED_SETTLE_S:g} s after what "
        "precedes it is in place:",
        "  1. idle: the server as started (after one probe try-lock and its unlock)",
        f"  2. connections: a holder connection has locked {PARKED_RESOURCES} resources "
        f"(expiry 3600 s), then {args.waiters:,} more connections each sent one try-lock of "
        "one of them (answered `{\"success\":false}`: held) and stay open, idle",
        f"  3. parked: each of those {args.waiters:,} connections sends one acquire of its "
        f"resource (waitTimeoutMs {PARKED_WAIT_MS}); the window starts once dlockd's "
        f"`dlockd_waiters` counts all of them, and it must still count all of them after "
        "it, with no answer on any of their connections",
        "- server CPU: the time on a CPU of all of dlockd's threads over the window, from "
        "/proc/PID/task/TID/schedstat (nanoseconds), and beside it utime+stime from "
        f"/proc/PID/stat (CLK_TCK {clock_ticks()}: {1000 / clock_ticks():.0f} ms a tick, too "
        "coarse alone for a few ms in 10 s); wake-ups: voluntary context switches of its "
        "threads (/proc/PID/task/TID/status)",
        "- memory: RssAnon of dlockd (/proc/PID/status) at the end of each window; bytes per "
        "connection = (connections − idle) / W; bytes per parked waiter = (parked − "
        "connections) / W, so the connection's own buffers are not counted",
        "- the client: this script, sockets in one process (open-file limit raised with "
        "setrlimit; dlockd inherits it), idle during the windows",
    ]
    return [parked_table(args, recs)], {}, head
