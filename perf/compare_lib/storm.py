"""--expiry-storm: open-loop latency while many leases expire at once."""

import statistics
import time

from .client import loadgen_argv, loadgen_driver, run_loadgen, server_driver
from .common import log
from .config import (
    CLIENT_CPU, LABELS, LOADGEN_SLACK_S, READY_TIMEOUT_S, SAMPLE_INTERVAL_S, STORM_SERVERS,
)
from .fmt import fmt_mib, fmt_rate, fmt_ratio, fmt_us
from .leases import Sampler, dlockd_lease_flags, fill, fill_argv
from .procs import free_port, rss_kb
from .rediscli import redis_keys
from .servers import Server, protocol_of, server_argv


def latency_medians(results):
    """Median p99, p99.9 and max (µs) over client results."""
    med = statistics.median
    maxes = [r["max_us"] for r in results if isinstance(r.get("max_us"), (int, float))]
    return {
        "p99": med(r["p99_us"] for r in results),
        "p999": med(r["p999_us"] for r in results),
        "max": med(maxes) if maxes else None,
    }


def storm_one(args, bins, workdir, name, placement, filled, notes):
    """One measured open-loop run on a fresh `name`; if `filled`, right after filling it with
    `args.storm_leases` leases that all end within the run. Returns what was measured."""
    port = free_port()
    leases = args.storm_leases
    argv, cpus = server_argv(name, bins, port, workdir, dlockd_flags=dlockd_lease_flags(leases))
    server = Server(name, argv, port, workdir, READY_TIMEOUT_S, cpus)
    cpu = CLIENT_CPU[placement]
    protocol = protocol_of(name)
    rate = args.storm_rate
    what = f"{name} expiry storm {placement} " + ("filled" if filled else "baseline")
    rec = {"filled": filled}
    try:
        server.start()
        pid = server.proc.pid
        # The same unmeasured warm-up for both, before the fill: a fill's leases must end
        # inside the measured run, so nothing may come between the fill and it.
        warm = loadgen_argv(bins, port, protocol, "uncontended", args.connections, 1, cpu,
                            ("duration", args.warmup), name == "dlockd", rate=rate)
        warm_result = run_loadgen(warm, args.warmup + LOADGEN_SLACK_S, f"{what} (warm-up)")
        if notes.get("loadgen driver") is None:
            notes["loadgen driver"] = loadgen_driver(warm_result)
        if server.says_driver and notes.get("dlockd driver") is None:
            notes["dlockd driver"] = server_driver(server.startup_line())
        server.check_alive()
        rec["rss_empty"] = rss_kb(pid)
        if filled:
            fill_result, fill_start, fill_end = fill(bins, server, leases, args.storm_expiry,
                                                     what)
            rec["fill_s"] = fill_end - fill_start
            rec["fill_rps"] = fill_result["rps"]
        rec["rss_before"] = rss_kb(pid)
        if name == "redis":
            rec["keys_before"] = redis_keys(port)
        measured = loadgen_argv(bins, port, protocol, "uncontended", args.connections, 1, cpu,
                                ("duration", args.duration), False, rate=rate)
        sampler = Sampler(pid)
        run_start = time.monotonic()
        sampler.start(run_start)
        try:
            result = run_loadgen(measured, args.duration + LOADGEN_SLACK_S, what)
        finally:
            sampler.stop()
        rec["rss_after"] = rss_kb(pid)
        if name == "redis":
            rec["keys_after"] = redis_keys(port)
        server.check_alive()
    finally:
        server.stop()
    rec["result"] = result
    rec["cpu_percent"] = sampler.cpu_percent()
    rec["rss_timeline"] = sampler.rss_mib()
    if filled:
        # A lease granted at t ends at t + expiry (dlockd: up to 1 ms later), so the fill's
        # leases end between these two instants, counted from the measured client's start.
        rec["expire_from"] = fill_start + args.storm_expiry - run_start
        rec["expire_to"] = fill_end + args.storm_expiry - run_start
        rec["covered"] = rec["expire_from"] >= 0 and rec["expire_to"] <= args.duration
    return rec


def storm(args, bins, workdir):
    servers = [s for s in STORM_SERVERS if s in args.servers]
    notes = {}
    recs = {}
    total = len(args.placements) * args.rounds * len(servers) * 2
    done = 0
    for placement in args.placements:
        for rnd in range(args.rounds):
            for name in servers:
                for filled in (True, False):
                    done += 1
                    rec = storm_one(args, bins, workdir, name, placement, filled, notes)
                    recs[(placement, name, filled, rnd)] = rec
                    r = rec["result"]
                    window = (f", leases end {rec['expire_from']:.1f}–{rec['expire_to']:.1f} s "
                              "into the run" if filled else "")
                    log(f"[{done}/{total}] storm {placement} round {rnd + 1} {name} "
                        f"{'filled' if filled else 'baseline'}: p50 {fmt_us(r['p50_us'])} µs, "
                        f"p99 {fmt_us(r['p99_us'])} µs, p99.9 {fmt_us(r['p999_us'])} µs, "
                        f"max {fmt_us(r.get('max_us'))} µs{window}")
    tables = []
    for placement in args.placements:
        lines = [
            f"### expiry storm, {placement}: uncontended open loop at "
            f"{args.storm_rate:,} req/s, depth 1, {args.connections} connections, "
            f"{args.duration:g} s, with and without {args.storm_leases:,} leases ending "
            "during it",
            "",
            "| server | leases ending in the run | round | req/s | p50 µs | p99 µs | p99.9 µs "
            "| max µs | when they end (s into the run) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in servers:
            for filled in (True, False):
                for rnd in range(args.rounds):
                    rec = recs[(placement, name, filled, rnd)]
                    r = rec["result"]
                    if filled:
                        when = f"{rec['expire_from']:.1f}–{rec['expire_to']:.1f}"
                        if not rec["covered"]:
                            when += " (**not inside the run**)"
                    else:
                        when = "–"
                    lines.append(
                        f"| {LABELS[name]} | {f'{args.storm_leases:,}' if filled else 'none'} "
                        f"| {rnd + 1} | {fmt_rate(r['rps'])} | {fmt_us(r['p50_us'])} | "
                        f"{fmt_us(r['p99_us'])} | {fmt_us(r['p999_us'])} | "
                        f"{fmt_us(r.get('max_us'))} | {when} |"
                    )
        lines += [
            "",
            "| server | p99 µs, without / with (median) | p99.9 µs, without / with "
            "| p99.9 with / without | max µs, without / with |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in servers:
            with_ = latency_medians([recs[(placement, name, True, k)]["result"]
                                     for k in range(args.rounds)])
            without = latency_medians([recs[(placement, name, False, k)]["result"]
                                       for k in range(args.rounds)])
            lines.append(
                f"| {LABELS[name]} | {fmt_us(without['p99'])} / {fmt_us(with_['p99'])} | "
                f"{fmt_us(without['p999'])} / {fmt_us(with_['p999'])} | "
                f"{fmt_ratio(with_['p999'], without['p999'])} | "
                f"{fmt_us(without['max'])} / {fmt_us(with_['max'])} |"
            )
        lines += [
            "",
            "| server | leases | round | RSS empty MiB | RSS before the run MiB "
            "| RSS after the run MiB | redis keys before / after the run |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for name in servers:
            for filled in (True, False):
                for rnd in range(args.rounds):
                    rec = recs[(placement, name, filled, rnd)]
                    keys = (f"{rec['keys_before']:,} / {rec['keys_after']:,}"
                            if name == "redis" else "–")
                    lines.append(
                        f"| {LABELS[name]} | {f'{args.storm_leases:,}' if filled else 'none'} "
                        f"| {rnd + 1} | {fmt_mib(rec['rss_empty'])} | "
                        f"{fmt_mib(rec['rss_before'])} | {fmt_mib(rec['rss_after'])} | {keys} |"
                    )
        lines += [
            "",
            f"Server CPU (% of one CPU) and RSS (MiB), every {SAMPLE_INTERVAL_S:g} s from the "
            "measured client's start:",
            "",
        ]
        for name in servers:
            for filled in (True, False):
                for rnd in range(args.rounds):
                    rec = recs[(placement, name, filled, rnd)]
                    label = f"{name}, {'filled' if filled else 'baseline'}, round {rnd + 1}"
                    cpu = " ".join(f"{c:.0f}" for c in rec["cpu_percent"])
                    lines.append(f"- {label}: CPU % {cpu}; RSS {' '.join(rec['rss_timeline'])}")
        tables.append("\n".join(lines))
    client = loadgen_argv({"dlockd-loadgen": "dlockd-loadgen"}, "PORT", "http|resp",
                          "uncontended", args.connections, 1, "C", ("duration", args.duration),
                          False, rate=args.storm_rate)
    fill_cmd = fill_argv({"dlockd-loadgen": "dlockd-loadgen"}, "PORT", "http|resp",
                         args.storm_leases, args.storm_expiry)
    head = [
        f"- runs: {args.rounds} round(s); each run on a fresh server (dlockd 1 worker, "
        "redis-server without persistence, on CPU 0): an unmeasured "
        f"{args.warmup:g} s warm-up at the same rate, then for the storm runs the fill, then "
        "at once the measured run; the baseline runs skip the fill",
        f"- fill ({args.storm_leases:,} leases of {args.storm_expiry} s, every lock checked "
        f"granted): `{' '.join(fill_cmd)}`",
        f"- measured run: `{' '.join(client)}` (C: the client's CPU: colo {CLIENT_CPU['colo']}, "
        f"split {CLIENT_CPU['split']})",
        "- when they end: from the fill's start and end plus the expiry, in seconds after the "
        "measured client was started (it opens its connections first, a few ms)",
        "- RSS: VmRSS from /proc/PID/status: empty (after the warm-up), before the measured "
        "run (after the fill), after it",
        "- dlockd decides expiry by deadline on every request and reclaims expired leases' "
        "memory a slice (about 0.1 ms) each millisecond while any remain, found within a "
        "100 ms housekeeping tick; redis-server expires by its own active expiry cycle (and "
        "on access)",
    ]
    return tables, notes, head
