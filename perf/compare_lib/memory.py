"""--memory: bytes of RSS per live lease."""

from .client import loadgen_argv, run_loadgen
from .common import Fail, log
from .config import (
    DLOCKD_DEFAULT_MAX_LEASES, FILL_CPU, FILL_DEPTH, FILL_EXPIRY_S, FILL_MAX_CONNECTIONS, LABELS,
    LOADGEN_COUNT_TIMEOUT_S, MEMORY_WARMUP_REQUESTS, READY_TIMEOUT_S, STORM_SERVERS,
)
from .fmt import fmt_mib, fmt_ms, fmt_rate, fmt_ratio
from .leases import dlockd_lease_flags, fill, fill_argv, fill_connections
from .procs import free_port, rss_kb
from .rediscli import redis_keys, redis_used_memory
from .servers import Server, protocol_of, server_argv


def memory_one(bins, workdir, name, leases):
    """Start `name` fresh, read its RSS, warm it up without leaving a lease, read again, fill
    it with `leases` leases, read again. Returns the readings."""
    port = free_port()
    argv, cpus = server_argv(name, bins, port, workdir, dlockd_flags=dlockd_lease_flags(leases))
    server = Server(name, argv, port, workdir, READY_TIMEOUT_S, cpus)
    protocol = protocol_of(name)
    what = f"{name} with {leases} leases"
    rec = {"leases": leases}
    try:
        server.start()
        pid = server.proc.pid
        rec["rss_fresh"] = rss_kb(pid)
        warm = loadgen_argv(bins, port, protocol, "uncontended", fill_connections(leases),
                            FILL_DEPTH, FILL_CPU, ("requests", MEMORY_WARMUP_REQUESTS),
                            name == "dlockd")
        run_loadgen(warm, LOADGEN_COUNT_TIMEOUT_S, f"{what} (warm-up)")
        server.check_alive()
        rec["rss_before"] = rss_kb(pid)
        if name == "redis":
            rec["used_before"] = redis_used_memory(port)
        result, start, end = fill(bins, server, leases, FILL_EXPIRY_S, what)
        rec["rss_after"] = rss_kb(pid)
        if name == "redis":
            rec["used_after"] = redis_used_memory(port)
            keys = redis_keys(port)
            if keys != leases:
                raise Fail(f"{what}: redis-server holds {keys} keys after the fill, not {leases}")
        server.check_alive()
    finally:
        server.stop()
    if None in (rec["rss_fresh"], rec["rss_before"], rec["rss_after"]):
        raise Fail(f"{what}: could not read VmRSS from /proc/{pid}/status")
    rec["fill_s"] = end - start
    rec["fill_rps"] = result["rps"]
    rec["fill_p999"] = result["p999_us"]
    rec["fill_max"] = result.get("max_us")
    rec["per_lease"] = (rec["rss_after"] - rec["rss_before"]) * 1024 / leases
    if name == "redis":
        rec["used_per_lease"] = (rec["used_after"] - rec["used_before"]) / leases
    return rec


def memory(args, bins, workdir):
    servers = [s for s in STORM_SERVERS if s in args.servers]
    recs = {}
    for leases in args.leases:
        for name in servers:
            rec = memory_one(bins, workdir, name, leases)
            recs[(name, leases)] = rec
            used = rec.get("used_per_lease")
            log(f"{name} {leases} leases: RSS {fmt_mib(rec['rss_before'])} -> "
                f"{fmt_mib(rec['rss_after'])} MiB = {rec['per_lease']:.0f} B/lease"
                + (f", used_memory {used:.0f} B/lease" if used is not None else "")
                + f"; fill {rec['fill_s']:.1f} s at {fmt_rate(rec['fill_rps'])} req/s")
    lines = [
        f"### bytes per live lease ({', '.join(f'{n:,}' for n in args.leases)} leases of "
        "36-byte resource ids)",
        "",
        "| server | leases | RSS fresh MiB | RSS before fill MiB | RSS filled MiB "
        "| RSS bytes/lease | used_memory bytes/lease | fill s | fill req/s "
        "| fill p99.9 ms | fill max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for leases in args.leases:
        for name in servers:
            r = recs[(name, leases)]
            used = r.get("used_per_lease")
            lines.append(
                f"| {LABELS[name]} | {leases:,} | {fmt_mib(r['rss_fresh'])} | "
                f"{fmt_mib(r['rss_before'])} | {fmt_mib(r['rss_after'])} | "
                f"{r['per_lease']:.0f} | {'–' if used is None else f'{used:.0f}'} | "
                f"{r['fill_s']:.1f} | {fmt_rate(r['fill_rps'])} | {fmt_ms(r['fill_p999'])} | "
                f"{fmt_ms(r['fill_max'])} |"
            )
    if len(servers) == 2:
        lines += [
            "",
            "| leases | dlockd / redis, RSS per lease | dlockd RSS / redis used_memory, "
            "per lease |",
            "|---:|---:|---:|",
        ]
        for leases in args.leases:
            d, r = recs[("dlockd", leases)], recs[("redis", leases)]
            lines.append(f"| {leases:,} | {fmt_ratio(d['per_lease'], r['per_lease'])} | "
                         f"{fmt_ratio(d['per_lease'], r['used_per_lease'])} |")
    fill_cmd = fill_argv({"dlockd-loadgen": "dlockd-loadgen"}, "PORT", "http|resp", "L",
                         FILL_EXPIRY_S, connections="C")
    head = [
        "- each server started fresh per lease count: dlockd "
        f"`dlockd --listen 127.0.0.1:PORT --workers 1` (with `--max-leases 2×L` when 2×L is "
        f"over its default {DLOCKD_DEFAULT_MAX_LEASES:,}), redis-server with "
        "`--save '' --appendonly no`; both on CPU 0",
        "- RSS fresh: VmRSS (/proc/PID/status) once it accepts connections; RSS before fill: "
        f"after an unmeasured run of {MEMORY_WARMUP_REQUESTS:,} uncontended requests (lock "
        "and unlock, no lease left) on the fill's connections, so connection buffers and the "
        "runtime are counted before, not per lease",
        "- fill (L leases, every lock checked granted; redis: DBSIZE = L): "
        f"`{' '.join(fill_cmd)}` "
        f"(C: the most connections up to {FILL_MAX_CONNECTIONS} that divide L evenly)",
        "- RSS bytes/lease = (RSS filled − RSS before fill) / L; used_memory bytes/lease: the "
        "same over redis-server's `INFO memory` used_memory (its allocator's view, without "
        "fragmentation and freed-but-kept pages)",
        "- a hash table that doubles as it grows makes bytes/lease step with L: compare the "
        "servers at the same L",
    ]
    return ["\n".join(lines)], {}, head
