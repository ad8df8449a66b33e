"""--handoff: N clients contending for one lock, dlockd's acquire against polling try-lock
(dlockd and redis-server), and the uncontended lock+unlock rate of one connection beside
them."""

import math
import statistics

from .client import loadgen_argv, loadgen_driver, run_loadgen, server_driver
from .common import Fail, log
from .config import (
    CLIENT_CPU, DLOCKD_SERVERS, HANDOFF_BACKOFF_MS, HANDOFF_RUNS, HANDOFF_TARGETS,
    HANDOFF_WAIT_MS, LOADGEN_SLACK_S, PROBE_TIMEOUT_S, READY_TIMEOUT_S, SERVER_CPU,
)
from .fmt import fmt_cpu, fmt_rate, fmt_us
from .probes import check_probe
from .procs import clock_ticks, free_port
from .servers import new_server, protocol_of

# The reference run: the uncontended lock+unlock rate of one connection.
ONE_CONNECTION = "one-connection"


def handoff_runs(servers):
    """The runs of one round whose server is in `servers`, in alternation order."""
    return [r for r in HANDOFF_RUNS if r[1] in servers]


def handoff_argv(bins, port, run, clients, cpu, seconds, seed):
    """The client's command line for `run` (an entry of HANDOFF_RUNS without its label);
    `seed` varies the pollers' backoffs between rounds (the same for every server of a
    round, so that each meets the same client)."""
    key, server, workload, extra = run
    protocol = protocol_of(server)
    if workload == "uncontended":
        return loadgen_argv(bins, port, protocol, workload, 1, 1, cpu, ("duration", seconds),
                            False)
    flags = list(extra)
    if workload == "handoff":
        flags = ["--wait-ms", str(HANDOFF_WAIT_MS), *flags]
    else:
        flags = ["--backoff", f"{HANDOFF_BACKOFF_MS[0]}-{HANDOFF_BACKOFF_MS[1]}", *flags]
    flags += ["--seed", str(seed)]
    return loadgen_argv(bins, port, protocol, workload, clients, 1, cpu, ("duration", seconds),
                        False, extra=flags)


def handoff_one(args, bins, workdir, run, placement, notes, seed):
    """Starts `run`'s server fresh, probes it (dlockd), warms it up with the same client for
    --warmup s, measures one run of --duration s, stops it. Returns the client's result with
    the server's CPU time over the measured run added."""
    key, name = run[0], run[1]
    port = free_port()
    server = new_server(name, bins, port, workdir, READY_TIMEOUT_S)
    cpu = CLIENT_CPU[placement]
    what = f"handoff {key} {placement}"
    try:
        server.start()
        if name in DLOCKD_SERVERS:
            check_probe(server, PROBE_TIMEOUT_S)
        # The warm-up's backoffs differ from the measured run's.
        warm = handoff_argv(bins, port, run, args.clients, cpu, args.warmup, seed + 1000)
        warm_result = run_loadgen(warm, args.warmup + LOADGEN_SLACK_S, f"{what} (warm-up)")
        if notes.get("loadgen driver") is None:
            notes["loadgen driver"] = loadgen_driver(warm_result)
        if server.says_driver and notes.get("dlockd driver") is None:
            notes["dlockd driver"] = server_driver(server.startup_line())
        server.check_alive()
        measured = handoff_argv(bins, port, run, args.clients, cpu, args.duration, seed)
        before, _ = server.cpu_ticks()
        result = run_loadgen(measured, args.duration + LOADGEN_SLACK_S + HANDOFF_WAIT_MS / 1000,
                             what)
        after, _ = server.cpu_ticks()
        server.check_alive()
    finally:
        server.stop()
    if key != ONE_CONNECTION:
        h = result.get("handoff")
        if not isinstance(h, dict) or not h.get("grants"):
            raise Fail(f"{what}: the client reported no grant: {result}")
    result["server_cpu_ticks"] = after - before
    result["server_cpu_share"] = (after - before) / clock_ticks() / args.duration
    return result


def summarize_handoff(runs):
    """Medians (and ranges) over the rounds of one run's results."""
    med = statistics.median
    hs = [r["handoff"] for r in runs]
    fair = [math.inf if h["fairness"] is None else h["fairness"] for h in hs]
    rates = [h["grants_per_s"] for h in hs]
    return {
        "grants_per_s": med(rates),
        "grants_per_s_min": min(rates),
        "grants_per_s_max": max(rates),
        "p50": med(h["handoff_p50_us"] for h in hs),
        "p99": med(h["handoff_p99_us"] for h in hs),
        "p99_min": min(h["handoff_p99_us"] for h in hs),
        "p99_max": max(h["handoff_p99_us"] for h in hs),
        "max": med(h["handoff_max_us"] for h in hs),
        "pass_wait_p99": med(h["pass_wait_p99_us"] for h in hs),
        "self_share": med(h["self_grants"] / h["grants"] for h in hs),
        "fairness": med(fair),
        "fairness_worst": max(fair),
        "per_client": [h["grants_per_connection"] for h in hs],
        "cpu_share": med(r["server_cpu_share"] for r in runs),
        "client_cpu": med(r["client_cpu_ns_per_req"] / 1000 for r in runs),
    }


def summarize_one_connection(runs):
    """The uncontended runs of one connection: lock+unlock pairs a second (half the
    requests)."""
    pairs = [r["rps"] / 2 for r in runs]
    return {
        "pairs_per_s": statistics.median(pairs),
        "pairs_per_s_min": min(pairs),
        "pairs_per_s_max": max(pairs),
        "cpu_share": statistics.median(r["server_cpu_share"] for r in runs),
        "client_cpu": statistics.median(r["client_cpu_ns_per_req"] / 1000 for r in runs),
    }


def fmt_fairness(v):
    return "∞" if v is None or math.isinf(v) else f"{v:.3f}"


def fmt_times(v):
    """A ratio that may be large: 0.93, 12.4, 1,874."""
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def verdict(value, target, at_most):
    if value is None:
        return "–"
    return "met" if (value <= target if at_most else value >= target) else "not met"


def targets_rows(summary, one):
    """(measure, target, figure, verdict) for each of the issue's handoff targets that this
    table has the runs for."""
    rows = []
    acq = summary.get("acquire")
    if acq:
        t = HANDOFF_TARGETS["p99_us"]
        rows.append(("handoff p99, dlockd acquire (release → next holder's answer)",
                     f"≤ {t:g} µs", f"{fmt_us(acq['p99'])} µs "
                     f"({fmt_us(acq['p99_min'])}–{fmt_us(acq['p99_max'])})",
                     verdict(acq["p99"], t, True)))
        for key, who in (("poll-dlockd", "dlockd"), ("poll-redis", "redis-server")):
            p = summary.get(key)
            if p and acq["p99"]:
                ratio = p["p99"] / acq["p99"]
                t = HANDOFF_TARGETS["polling_ratio"]
                rows.append((f"handoff p99, polling {who} / dlockd acquire", f"≥ {t:g} ×",
                             fmt_times(ratio), verdict(ratio, t, False)))
        if one and one["pairs_per_s"]:
            ratio = acq["grants_per_s"] / one["pairs_per_s"]
            t = HANDOFF_TARGETS["grants_ratio"]
            rows.append(("grants/s, dlockd acquire / uncontended lock+unlock pairs/s of one "
                         "connection", f"≥ {t:g} ×", fmt_times(ratio),
                         verdict(ratio, t, False)))
        t = HANDOFF_TARGETS["fairness"]
        rows.append(("max/min grants per client, dlockd acquire (the worst round)",
                     f"≤ {t:g}", fmt_fairness(acq["fairness_worst"]),
                     verdict(acq["fairness_worst"], t, True)))
    return rows


def handoff_table(placement, args, summary, one, labels):
    """One placement's table: a row per run, the targets, and the grants per client."""
    lines = [
        f"### handoff, {placement}: {args.clients} clients on one resource, "
        f"{args.duration:g} s per run",
        "",
        "| clients | grants/s (median) | min–max | handoff p50 µs | p99 µs | p99 min–max µs "
        "| max µs | grants back to the releaser | wait p99 of a pass ms "
        "| max/min grants per client (median, worst) | server CPU % of a core "
        "| client CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in labels:
        s = summary.get(key)
        if s is None:
            continue
        lines.append(
            f"| {label} | {fmt_rate(s['grants_per_s'])} | {fmt_rate(s['grants_per_s_min'])}–"
            f"{fmt_rate(s['grants_per_s_max'])} | {fmt_us(s['p50'])} | {fmt_us(s['p99'])} | "
            f"{fmt_us(s['p99_min'])}–{fmt_us(s['p99_max'])} | {fmt_us(s['max'])} | "
            f"{s['self_share']:.1%} | {s['pass_wait_p99'] / 1000:.2f} | "
            f"{fmt_fairness(s['fairness'])}, {fmt_fairness(s['fairness_worst'])} | "
            f"{s['cpu_share']:.1%} | {fmt_cpu(s['client_cpu'])} |"
        )
    if one:
        lines.append(
            f"| dlockd, 1 connection, uncontended lock+unlock (pairs/s) | "
            f"{fmt_rate(one['pairs_per_s'])} | {fmt_rate(one['pairs_per_s_min'])}–"
            f"{fmt_rate(one['pairs_per_s_max'])} | – | – | – | – | – | – | – | "
            f"{one['cpu_share']:.1%} | {fmt_cpu(one['client_cpu'])} |"
        )
    rows = targets_rows(summary, one)
    if rows:
        lines += ["", "| target | wanted | figure (median over the rounds) | met |",
                  "|---|---|---:|---|"]
        lines += [f"| {m} | {t} | {f} | {v} |" for m, t, f, v in rows]
    lines += ["", "Grants per client, each round:", ""]
    for key, label in labels:
        s = summary.get(key)
        if s is None:
            continue
        per = "; ".join(" ".join(str(n) for n in counts) for counts in s["per_client"])
        lines.append(f"- {label}: {per}")
    return "\n".join(lines)


def handoff(args, bins, workdir):
    runs = handoff_runs(args.servers)
    if not any(r[0] == "acquire" for r in runs):
        raise Fail("--handoff measures dlockd's acquire: --servers must name dlockd")
    labels = [(r[0], r[4]) for r in runs if r[0] != ONE_CONNECTION]
    notes = {}
    tables = []
    total = len(args.placements) * args.rounds * len(runs)
    done = 0
    for placement in args.placements:
        results = {r[0]: [] for r in runs}
        for rnd in range(args.rounds):
            for run in runs:
                done += 1
                spec = run[:4]
                r = handoff_one(args, bins, workdir, spec, placement, notes, rnd + 1)
                results[run[0]].append(r)
                h = r.get("handoff")
                if h:
                    log(f"[{done}/{total}] handoff {placement} round {rnd + 1} {run[0]}: "
                        f"{h['grants_per_s']:.0f} grants/s, handoff p50 "
                        f"{fmt_us(h['handoff_p50_us'])} µs, p99 {fmt_us(h['handoff_p99_us'])} "
                        f"µs, max/min {fmt_fairness(h['fairness'])}, back to the releaser "
                        f"{h['self_grants']}/{h['grants']}")
                else:
                    log(f"[{done}/{total}] handoff {placement} round {rnd + 1} {run[0]}: "
                        f"{fmt_rate(r['rps'] / 2)} lock+unlock pairs/s")
        summary = {k: summarize_handoff(v) for k, v in results.items()
                   if v and k != ONE_CONNECTION}
        one = summarize_one_connection(results[ONE_CONNECTION]) \
            if results.get(ONE_CONNECTION) else None
        tables.append(handoff_table(placement, args, summary, one, labels))
    return tables, notes, handoff_head(args, runs)


def handoff_head(args, runs):
    """The section's lines on how the runs were made: each client command, the definitions."""
    bins = {"dlockd-loadgen": "dlockd-loadgen"}
    commands = []
    for run in runs:
        argv = handoff_argv(bins, "PORT", run[:4], args.clients, "C", args.duration, "K")
        commands.append(f"  - {run[4]}: `{' '.join(argv)}`")
    lo, hi = HANDOFF_BACKOFF_MS
    return [
        f"- runs: per placement, {args.rounds} round(s) of the runs below, alternating, each on "
        f"a fresh server (dlockd `--workers 1`, redis-server without persistence, on CPU "
        f"{SERVER_CPU}) after a separate {args.warmup:g} s warm-up with the same client; "
        "medians over the rounds; colo: client on CPU "
        f"{CLIENT_CPU['colo']}, split: client on CPU {CLIENT_CPU['split']}",
        "- clients, measured run (C: the client's CPU, K: the round, 1, 2, …, so that the "
        "backoffs differ between rounds and not between servers; the warm-up has K + 1000); "
        "every client is one connection, all on "
        "one client thread, one request at a time, on the one resource "
        "`00000003-0000-0000-0000-000000000000`:",
        *commands,
        f"- acquire: each client sends dlockd's acquire (waitTimeoutMs {HANDOFF_WAIT_MS}); "
        "granted, it unlocks at once and acquires again (behind the others, in dlockd's "
        "FIFO queue)",
        f"- polling: each client sends a try-lock (dlockd's HTTP lock, or `SET NX EX` to "
        f"redis-server); refused, it sleeps a uniformly random {lo}–{hi} ms and tries again; "
        "granted, it unlocks at once (redis: the lock.redis unlock script) and sleeps the same "
        "kind of backoff before it tries again. With `--greedy` it tries again at once after "
        "its unlock, as a loop of blocking-lock calls built on try-lock does: the releaser "
        "is then almost always first, and takes the lock back itself",
        "- handoff latency of a grant: the instant the new holder read its grant minus the "
        "instant the previous holder's unlock was sent (taken before the write), on one "
        "monotonic clock in the one client thread; a run's first grant has none. Polling "
        "with a backoff: the lock is free between polls, so this is mostly the wait for the "
        "next poll; greedy polling: mostly the releaser's own next try-lock",
        "- grants back to the releaser: grants to the client that held the lock just "
        "before; a pass: a grant to any other client. Wait of a pass: from when that client "
        "started asking (its acquire's send, or its first try-lock since its last grant) to "
        "its grant: how long a client waited for the lock while another had it",
        "- grants/s: grants whose answer arrived in the measured run, over its length; max/min "
        "grants per client over the same run (∞: a client got none)",
        "- the one-connection row: dlockd's uncontended lock+unlock rate of one connection at "
        "depth 1 (requests/s over 2), the reference of the grants/s target",
        "- server CPU: utime+stime of the server's processes from /proc/PID/stat over the "
        f"measured run (CLK_TCK {clock_ticks()}), in % of one core",
        "- the targets are stated for colo (server and client on one core); split is "
        "reported for comparison (perf/README.md: cross-vCPU wake-ups)",
    ]
