"""--open-loop: latency at half of redis-server's closed-loop maximum."""

import statistics

from .client import loadgen_argv
from .common import log
from .config import CLIENT_CPU, LABELS, OPEN_LOOP_SERVERS, OPEN_LOOP_TARGET, SERVER_CPU
from .fmt import fmt_cpu, fmt_rate, fmt_ratio, fmt_us
from .procs import clock_ticks
from .side_by_side import measure_one, summarize


def open_loop_table(placement, args, redis_runs, rate, summary, servers):
    rmax = [r["rps"] for r in redis_runs]
    lines = [
        f"### open loop at half of redis-server's maximum, {placement}, uncontended, depth 1, "
        f"{args.connections} connections",
        "",
        f"redis-server's maximum, closed loop: {fmt_rate(statistics.median(rmax))} req/s "
        f"(median of {len(rmax)}, {fmt_rate(min(rmax))}–{fmt_rate(max(rmax))}); offered "
        f"rate: {rate:,} req/s",
        "",
        "| server | req/s (median) | min–max | p50 µs | p99 µs | p99 min–max µs | p99.9 µs "
        "| max µs | server CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    behind = []
    for name in servers:
        s = summary[name]
        lines.append(
            f"| {LABELS[name]} | {fmt_rate(s['rps'])} | {fmt_rate(s['rps_min'])}–"
            f"{fmt_rate(s['rps_max'])} | {fmt_us(s['p50'])} | {fmt_us(s['p99'])} | "
            f"{fmt_us(s['p99_min'])}–{fmt_us(s['p99_max'])} | {fmt_us(s['p999'])} | "
            f"{fmt_us(s['max'])} | {fmt_cpu(s['cpu'])} |"
        )
        if s["rps_min"] < rate * 0.98:
            behind.append(name)
    d = summary.get("dlockd")
    rows = [n for n in ("redis", "ceiling") if n in summary]
    if d and rows:
        lines += ["", "| ratio | p50 | p99 | p99.9 |", "|---|---:|---:|---:|"]
        for n in rows:
            o = summary[n]
            lines.append(f"| dlockd / {n} | {fmt_ratio(d['p50'], o['p50'])} | "
                         f"{fmt_ratio(d['p99'], o['p99'])} | {fmt_ratio(d['p999'], o['p999'])} |")
        if "redis" in summary:
            ratio = d["p99"] / summary["redis"]["p99"] if summary["redis"]["p99"] else None
            if ratio is not None:
                verdict = "met" if ratio <= OPEN_LOOP_TARGET else "not met"
                lines += ["", f"Target dlockd p99 ≤ {OPEN_LOOP_TARGET:g} × redis-server's p99: "
                              f"{ratio:.2f} ({verdict})."]
    if behind:
        lines += ["", f"{', '.join(behind)} answered fewer than 98 % of the offered requests "
                      "in some round: it did not keep up, and its latencies include the queue."]
    return "\n".join(lines)


def open_loop(args, bins, workdir):
    servers = [s for s in OPEN_LOOP_SERVERS if s in args.servers]
    notes = {}
    tables = []
    rates = {}
    total = len(args.placements) * args.rounds * (1 + len(servers))
    done = 0
    for placement in args.placements:
        redis_runs = []
        for rnd in range(args.rounds):
            done += 1
            r = measure_one(args, bins, workdir, "redis", "uncontended", placement, 1, notes)
            redis_runs.append(r)
            log(f"[{done}/{total}] redis closed loop {placement} round {rnd + 1}: "
                f"{fmt_rate(r['rps'])} req/s")
        rate = max(1, int(statistics.median(r["rps"] for r in redis_runs) / 2))
        rates[placement] = rate
        runs = {s: [] for s in servers}
        for rnd in range(args.rounds):
            for name in servers:
                done += 1
                r = measure_one(args, bins, workdir, name, "uncontended", placement, 1, notes,
                                rate=rate)
                runs[name].append(r)
                log(f"[{done}/{total}] open loop {rate} req/s {placement} round {rnd + 1} "
                    f"{name}: {fmt_rate(r['rps'])} req/s, p50 {fmt_us(r['p50_us'])} µs, "
                    f"p99 {fmt_us(r['p99_us'])} µs, p99.9 {fmt_us(r['p999_us'])} µs")
        summary = {s: summarize(v) for s, v in runs.items()}
        tables.append(open_loop_table(placement, args, redis_runs, rate, summary, servers))
    closed = loadgen_argv({"dlockd-loadgen": "dlockd-loadgen"}, "PORT", "resp", "uncontended",
                          args.connections, 1, "C", ("duration", args.duration), False)
    opened = loadgen_argv({"dlockd-loadgen": "dlockd-loadgen"}, "PORT", "http|resp",
                          "uncontended", args.connections, 1, "C", ("duration", args.duration),
                          False, rate="R", pacer="P")
    head = [
        f"- runs: per placement, {args.rounds} closed-loop round(s) of redis-server for its "
        f"maximum, then {args.rounds} round(s) of the servers alternating at R = half its "
        f"median; each run on a fresh server after a separate {args.warmup:g} s warm-up (the "
        "same rate); medians over the rounds",
        f"- placement: server on CPU {SERVER_CPU}; colo: client on CPU {CLIENT_CPU['colo']}, "
        f"split: client on CPU {CLIENT_CPU['split']}",
        f"- redis-server's maximum: `{' '.join(closed)}`",
        f"- open loop: `{' '.join(opened)}` (R: "
        + ", ".join(f"{p} {r:,}" for p, r in rates.items())
        + "; latency from each request's intended send time; P: colo `timer`, the "
        "client's 1 ms timer, so requests go out in bursts at 1 kHz; split `spin`, each "
        "request at its own time, the client spinning on its own CPU)",
        f"- server CPU: utime+stime of the server's processes from /proc/PID/stat "
        f"(CLK_TCK {clock_ticks()}), over the measured run, per request",
    ]
    return tables, notes, head
