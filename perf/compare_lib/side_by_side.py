"""The side-by-side comparison: one measured run per server, alternating, and its tables."""

import statistics
import time

from .client import loadgen_argv, loadgen_driver, run_loadgen, server_driver
from .common import log
from .common import Fail
from .config import (
    BASE_SERVERS, CEILING_SERVERS, CLIENT_CPU, DLOCKD_SERVERS, ETCD_SERVERS, ETCD_STORE_SERVERS,
    ETCD_TARGETS, LABELS, LOADGEN_SLACK_S, MIN_CPU_TICKS, PROBE_TIMEOUT_S, RATIOS,
    READY_TIMEOUT_S, UDS_TARGETS, UDS_TARGETS_CONNECTIONS, WORKLOAD_SERVERS,
)
from .fmt import fmt_cpu, fmt_rate, fmt_ratio, fmt_ratio_of_ratios, fmt_us
from .probes import (
    check_etcd_clean, check_etcd_writes, check_horizon_moved, check_no_errors_answered,
    check_probe, check_store_redis_calls, data_dir_note, etcd_note, etcd_of, etcd_revision,
    horizon_mtime, store_redis_calls, wrong_answers,
)
from .procs import clock_ticks, free_port
from .servers import new_server, protocol_of


def open_loop_pacer(placement, rate):
    """How the client paces an open loop: in split placement, where it has a CPU of its own,
    each request at its own time (`--pacer spin`); co-located, its spinning would take the
    server's CPU, so on its 1 ms timer."""
    if rate and placement == "split":
        return "spin"
    return None


def warm_up_checked(name, depth):
    """Whether `name`'s warm-up runs with --check: the servers whose answers depend on the
    request (dlockd's, etcd's), but not dlockd on etcd with requests pipelined: it does not
    apply a connection's pipelined requests in order (an unlock overtakes its lock), so its
    wrong answers are counted from its /metrics instead (wrong_answers)."""
    if name in ETCD_STORE_SERVERS:
        return depth == 1
    return name in DLOCKD_SERVERS or name in ETCD_SERVERS


def measure_one(args, bins, workdir, name, workload, placement, depth, notes, rate=0):
    """Start `name`, warm it up, measure one run, stop it. Returns the client's result with
    the server's CPU µs per request added. `rate` > 0: warm-up and measured run are open loop
    at that rate."""
    port = free_port()
    server = new_server(name, bins, port, workdir, READY_TIMEOUT_S)
    cpu = CLIENT_CPU[placement]
    protocol = protocol_of(name)
    what = f"{name} {workload} {placement} depth {depth}"
    pacer = open_loop_pacer(placement, rate)
    try:
        server.start()
        if name in DLOCKD_SERVERS:
            check_probe(server, PROBE_TIMEOUT_S)
        # Unmeasured warm-up; --check only where the answers depend on the request.
        warm = loadgen_argv(bins, server.target, protocol, workload, args.connections, depth,
                            cpu, ("duration", args.warmup), warm_up_checked(name, depth),
                            rate=rate, pacer=pacer)
        warm_result = run_loadgen(warm, args.warmup + LOADGEN_SLACK_S, f"{what} (warm-up)")
        # The etcd client runs on tokio, the others on monoio.
        driver_key = "loadgen driver, etcd" if protocol == "etcd" else "loadgen driver"
        if notes.get(driver_key) is None:
            notes[driver_key] = loadgen_driver(warm_result)
        if server.says_driver:
            key = ("ceiling driver" if name in CEILING_SERVERS else
                   "dlockd-base driver" if name in BASE_SERVERS else "dlockd driver")
            if notes.get(key) is None:
                notes[key] = server_driver(server.startup_line())
        server.check_alive()
        measured = loadgen_argv(bins, server.target, protocol, workload, args.connections, depth,
                                cpu, ("duration", args.duration), False, rate=rate,
                                pacer=pacer)
        horizon_before = horizon_mtime(server)
        calls_before = store_redis_calls(server)
        revision_before = etcd_revision(server)
        wrong_before = wrong_answers(server, what)
        sleeps_before = server.sleeps()
        before, store_before = server.cpu_ticks()
        result = run_loadgen(measured, args.duration + LOADGEN_SLACK_S, what)
        after, store_after = server.cpu_ticks()
        sleeps_after = server.sleeps()
        server.check_alive()
        check_horizon_moved(server, horizon_before, what)
        check_store_redis_calls(server, calls_before, result["requests"], what)
        check_no_errors_answered(server, what)
        wrong = None if wrong_before is None else wrong_answers(server, what) - wrong_before
        check_etcd_writes(server, revision_before, result["requests"], wrong, what)
        if wrong:
            if depth == 1:
                raise Fail(f"{what}: dlockd answered {wrong} locks or unlocks wrong (a lock "
                           "refused or an unlock of a lock it did not find) with nothing "
                           f"pipelined\n{server.log_tail()}")
        else:
            check_etcd_clean(server, what)
        cluster = etcd_of(server)
    finally:
        server.stop()
    # Server CPU: the server's processes and its companions' (dlockd-redis's redis-server).
    per_request = 1e6 / clock_ticks() / result["requests"]
    result["server_cpu_us"] = (after - before) * per_request
    result["server_cpu_ticks"] = after - before
    result["server_sleeps_per_kreq"] = (sleeps_after - sleeps_before) * 1000 / result["requests"]
    if server.companions:
        result["companion_cpu_us"] = (store_after - store_before) * per_request
    if wrong is not None:
        result["wrong_per_kreq"] = wrong * 1000 / result["requests"]
    if cluster is not None and len(cluster.members) > 1:
        # dlockd sends every call to its first endpoint: whether that one led this run.
        result["leader_first"] = cluster.leader_index == 0
    return result


def measure_external(args, bins, ext, workload, placement, depth, notes):
    """One run against the external server `ext` (see external.py), as measure_one runs a
    server of its own but for starting and stopping it: a checked warm-up, then the measured
    run with its CPU time and context switches read from /proc/PID before and after (None
    without PIDs)."""
    cpu = CLIENT_CPU[placement]
    what = f"{ext.name} (external) {workload} {placement} depth {depth}"
    ext.check_alive(what)
    warm = loadgen_argv(bins, ext.target, "http", workload, args.connections, depth, cpu,
                        ("duration", args.warmup), True, store=ext.store)
    warm_result = run_loadgen(warm, args.warmup + LOADGEN_SLACK_S, f"{what} (warm-up)")
    if notes.get("loadgen driver") is None:
        notes["loadgen driver"] = loadgen_driver(warm_result)
    ext.check_alive(what)
    measured = loadgen_argv(bins, ext.target, "http", workload, args.connections, depth, cpu,
                            ("duration", args.duration), False, store=ext.store)
    sleeps_before = ext.sleeps()
    before = ext.cpu_ticks()
    result = run_loadgen(measured, args.duration + LOADGEN_SLACK_S, what)
    after = ext.cpu_ticks()
    sleeps_after = ext.sleeps()
    ext.check_alive(what)
    if before is None or after is None:
        result["server_cpu_us"] = result["server_cpu_ticks"] = None
        result["server_sleeps_per_kreq"] = None
    else:
        ticks = after[0] - before[0]
        result["server_cpu_us"] = ticks * 1e6 / clock_ticks() / result["requests"]
        result["server_cpu_ticks"] = ticks
        result["server_sleeps_per_kreq"] = ((sleeps_after - sleeps_before) * 1000
                                            / result["requests"])
    return result


def summarize(runs):
    rps = [r["rps"] for r in runs]
    med = statistics.median

    def med_of(key):
        """The median of a figure over the runs that have it (an external server without
        PIDs has no CPU time), None when none has."""
        v = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        return med(v) if v else None

    def client_cpu(r):
        v = r.get("client_cpu_ns_per_req")
        return v / 1000 if isinstance(v, (int, float)) else None

    ccpu = [c for c in (client_cpu(r) for r in runs) if c is not None]
    maxes = [r["max_us"] for r in runs if isinstance(r.get("max_us"), (int, float))]
    companion = [r["companion_cpu_us"] for r in runs if "companion_cpu_us" in r]
    wrong = [r["wrong_per_kreq"] for r in runs if "wrong_per_kreq" in r]
    leader_first = [r["leader_first"] for r in runs if "leader_first" in r]
    return {
        "rps": med(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50": med(r["p50_us"] for r in runs),
        "p99": med(r["p99_us"] for r in runs),
        "p99_min": min(r["p99_us"] for r in runs),
        "p99_max": max(r["p99_us"] for r in runs),
        "p999": med(r["p999_us"] for r in runs),
        "max": med(maxes) if maxes else None,
        "cpu": med_of("server_cpu_us"),
        "ticks": min((r["server_cpu_ticks"] for r in runs
                      if isinstance(r.get("server_cpu_ticks"), (int, float))), default=None),
        "sleeps": med_of("server_sleeps_per_kreq"),
        "client_cpu": med(ccpu) if ccpu else None,
        # dlockd-redis: its redis-server's part of "cpu" (median over the rounds on its own);
        # dlockd-etcd: its etcd's CPU, apart from "cpu" (dlockd's own).
        "companion_cpu": med(companion) if companion else None,
        # dlockd-etcd: wrong answers per 1,000 requests, the largest of the rounds.
        "wrong": max(wrong) if wrong else None,
        # A 3-member cluster: (runs whose first member led, runs).
        "leader_first": (sum(leader_first), len(leader_first)) if leader_first else None,
        "runs": len(runs),
    }


def verdict(value, target, at_most):
    if value is None:
        return "–"
    return "met" if (value <= target if at_most else value >= target) else "not met"


def uds_target_rows(summary, placement, depth, connections):
    """(measure, wanted, figure, verdict) for each of the issue's Unix-socket targets this
    table has both servers for: stated for colo at UDS_TARGETS_CONNECTIONS connections, so
    none in other tables."""
    if placement != "colo" or connections != UDS_TARGETS_CONNECTIONS:
        return []
    rows = []
    for key, at_depth, num, den, measure, target, at_most in UDS_TARGETS:
        a, b = summary.get(num), summary.get(den)
        if at_depth != depth or not a or not b:
            continue
        figure = a[key] / b[key] if a[key] is not None and b[key] else None
        over = "dlockd (TCP)" if den == "dlockd" else den
        rows.append((f"{measure}, {num} / {over}, depth {depth}",
                     f"{'≤' if at_most else '≥'} {target:g} ×",
                     "–" if figure is None else f"{figure:.2f}",
                     verdict(figure, target, at_most)))
    return rows


def etcd_members(anchor):
    n = ETCD_SERVERS[anchor]
    return f"{n} member{'s' if n > 1 else ''}"


def etcd_target_rows(summary, depth):
    """(measure, wanted, figure, verdict) for each of the issue's etcd targets and each pair
    of dlockd-etcd and its anchor the table has. Not judged when dlockd answered wrong: it
    then did other work than etcd did."""
    rows = []
    for store, anchor in ETCD_STORE_SERVERS.items():
        a, b = summary.get(store), summary.get(anchor)
        if not a or not b:
            continue
        for key, measure, target, at_most in ETCD_TARGETS:
            figure = a[key] / b[key] if a[key] is not None and b[key] else None
            verdict_ = verdict(figure, target, at_most)
            if a.get("wrong"):
                verdict_ = "not judged: wrong answers"
            rows.append((f"{measure}, {store} / {anchor} ({etcd_members(anchor)}), depth {depth}",
                         f"{'≤' if at_most else '≥'} {target:g} ×",
                         "–" if figure is None else f"{figure:.2f}", verdict_))
    return rows


def etcd_lines(summary, depth):
    """The etcd store's part of a table: dlockd-etcd over etcd driven directly, what its
    etcd spent, its wrong answers, which member led, and the targets."""
    lines = []
    pairs = [(s, a) for s, a in ETCD_STORE_SERVERS.items() if s in summary and a in summary]
    if pairs:
        lines += [
            "",
            "| etcd store | req/s | server CPU per request (dlockd's own / etcd's) | p99 |",
            "|---|---:|---:|---:|",
        ]
        for s, a in pairs:
            n, o = summary[s], summary[a]
            lines.append(
                f"| {s} / {a} | {fmt_ratio(n['rps'], o['rps'])} | "
                f"{fmt_ratio(n['cpu'], o['cpu'])} | {fmt_ratio(n['p99'], o['p99'])} |"
            )
    notes = []
    for s, a in ETCD_STORE_SERVERS.items():
        n = summary.get(s)
        if not n:
            continue
        if n["companion_cpu"] is not None:
            direct = summary.get(a)
            notes.append(
                f"{s}'s server CPU is dlockd's alone; its etcd ({etcd_members(a)}) spent "
                f"{fmt_cpu(n['companion_cpu'])} µs/req beside it (median)"
                + (f", against {fmt_cpu(direct['cpu'])} µs/req driven directly by the client"
                   if direct and direct["cpu"] is not None else "") + ".")
        if n.get("wrong"):
            notes.append(
                f"**{s} answered up to {fmt_cpu(n['wrong'])} of every 1,000 requests wrong** "
                "(a lock refused, an unlock of a lock it did not find: from its /metrics): "
                f"with {depth} requests pipelined on a connection, dlockd's etcd store does "
                "not apply them in order, and an unlock overtakes the lock written before it "
                "(one etcd call against two), leaving that lock held until its lease ends. "
                "Its req/s is not of the same work as etcd's here, and its targets are not "
                "judged.")
        if n.get("leader_first"):
            k, runs = n["leader_first"]
            notes.append(f"{s}: dlockd sends every call to its first endpoint; that member "
                         f"led its cluster in {k} of {runs} runs (the others forward to the "
                         "leader).")
    for text in notes:
        lines += ["", text]
    rows = etcd_target_rows(summary, depth)
    if rows:
        lines += ["", "| target | wanted | figure (median over the rounds) | met |",
                  "|---|---|---:|---|"]
        lines += [f"| {m} | {t} | {f} | {v} |" for m, t, f, v in rows]
    return lines


def side_by_side_table(title, summary, servers, labels=None, placement=None, depth=None,
                       connections=None, externals=()):
    """One table: a row per server, then the ratios that concern the servers it has.
    `labels` adds names (the external servers'); `placement`, `depth` and `connections` say
    which targets apply (the Unix socket's); `externals` are the names of external servers,
    which dlockd is set against."""
    labels = {**LABELS, **(labels or {})}
    lines = [
        f"### {title}",
        "",
        "| server | req/s (median) | min–max | p50 µs | p99 µs | p99.9 µs "
        "| server CPU µs/req | client CPU µs/req | server sleeps /1k req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in servers:
        s = summary.get(name)
        if s is None:
            continue
        lines.append(
            f"| {labels[name]} | {fmt_rate(s['rps'])} | "
            f"{fmt_rate(s['rps_min'])}–{fmt_rate(s['rps_max'])} | {fmt_us(s['p50'])} | "
            f"{fmt_us(s['p99'])} | {fmt_us(s['p999'])} | {fmt_cpu(s['cpu'])} | "
            f"{fmt_cpu(s['client_cpu'])} | {fmt_cpu(s['sleeps'])} |"
        )
    d = summary.get("dlockd")
    rows = [n for n in RATIOS if n in summary]
    if d and rows:
        lines += [
            "",
            "| ratio | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
        ]
        for n in rows:
            o = summary[n]
            lines.append(
                f"| dlockd / {n} | {fmt_ratio(d['rps'], o['rps'])} | "
                f"{fmt_ratio(d['cpu'], o['cpu'])} | {fmt_ratio(d['p99'], o['p99'])} |"
            )
    pairs = [(of, b) for b, of in BASE_SERVERS.items() if of in summary and b in summary]
    if pairs:
        # This commit over the baseline: the same server, the same command line and client.
        lines += [
            "",
            "| this commit / the baseline | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
        ]
        for of, b in pairs:
            n, o = summary[of], summary[b]
            lines.append(
                f"| {of} / {b} | {fmt_ratio(n['rps'], o['rps'])} | "
                f"{fmt_ratio(n['cpu'], o['cpu'])} | {fmt_ratio(n['p99'], o['p99'])} |"
            )
    dd = summary.get("dlockd-datadir")
    if d and dd:
        # Restart safety's price: the same server with the data dir on over off.
        lines += [
            "",
            "| data dir on / off | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
            f"| dlockd-datadir / dlockd | {fmt_ratio(dd['rps'], d['rps'])} | "
            f"{fmt_ratio(dd['cpu'], d['cpu'])} | {fmt_ratio(dd['p99'], d['p99'])} |",
        ]
    rs = summary.get("dlockd-redis")
    redis = summary.get("redis")
    if rs and (d or redis):
        # The Redis store: over the in-memory store (the same dlockd), and over Redis driven
        # directly by the same client with the same commands (what going through dlockd adds).
        lines += [
            "",
            "| Redis store | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
        ]
        for other, o in (("dlockd", d), ("redis", redis)):
            if o:
                lines.append(
                    f"| dlockd-redis / {other} | {fmt_ratio(rs['rps'], o['rps'])} | "
                    f"{fmt_ratio(rs['cpu'], o['cpu'])} | {fmt_ratio(rs['p99'], o['p99'])} |"
                )
        if rs["companion_cpu"] is not None:
            lines += [
                "",
                "dlockd-redis's server CPU is dlockd's and its redis-server's together; of it, "
                f"its redis-server: {fmt_cpu(rs['companion_cpu'])} µs/req (median).",
            ]
    lines += etcd_lines(summary, depth)
    uds_pairs = [(a, b) for a, b in (("dlockd-uds", "dlockd"), ("redis-uds", "redis"),
                                      ("dlockd-uds", "redis-uds"))
                 if a in summary and b in summary]
    if uds_pairs:
        # The Unix socket: each server over itself on loopback TCP, and dlockd over Redis
        # with both on a socket.
        lines += [
            "",
            "| Unix socket | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
        ]
        for a, b in uds_pairs:
            n, o = summary[a], summary[b]
            lines.append(
                f"| {a} / {b} | {fmt_ratio(n['rps'], o['rps'])} | "
                f"{fmt_ratio(n['cpu'], o['cpu'])} | {fmt_ratio(n['p99'], o['p99'])} |"
            )
    rows = uds_target_rows(summary, placement, depth, connections)
    if rows:
        lines += ["", "| target | wanted | figure (median over the rounds) | met |",
                  "|---|---|---:|---|"]
        lines += [f"| {m} | {t} | {f} | {v} |" for m, t, f, v in rows]
    ext_pairs = [(a, e) for e in externals if e in summary
                 for a in ("dlockd", "dlockd-uds", "dlockd-redis") if a in summary]
    if ext_pairs:
        # dlockd over the servers compare did not start (a daprd sidecar): the same client,
        # the same rounds. Server CPU only where their PIDs were given.
        lines += [
            "",
            "| beside the external servers | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
        ]
        for a, e in ext_pairs:
            n, o = summary[a], summary[e]
            lines.append(
                f"| {a} / {e} | {fmt_ratio(n['rps'], o['rps'])} | "
                f"{fmt_ratio(n['cpu'], o['cpu'])} | {fmt_ratio(n['p99'], o['p99'])} |"
            )
    two = summary.get("dlockd-2w")
    if d and two:
        # The cross-shard path: with 2 workers about half the requests are forwarded.
        lines += [
            "",
            "| cross-shard | req/s | server CPU per request | p99 |",
            "|---|---:|---:|---:|",
            f"| dlockd 2 workers / 1 worker | {fmt_ratio(two['rps'], d['rps'])} | "
            f"{fmt_ratio(two['cpu'], d['cpu'])} | {fmt_ratio(two['p99'], d['p99'])} |",
        ]
        c1, c2 = summary.get("ceiling"), summary.get("ceiling-2w")
        if c1 and c2:
            # The same for the ceiling, which forwards nothing: the machine's part. What
            # dlockd's ratio has beyond it is the forwarding's.
            lines += [
                f"| ceiling 2 workers / 1 worker | {fmt_ratio(c2['rps'], c1['rps'])} | "
                f"{fmt_ratio(c2['cpu'], c1['cpu'])} | {fmt_ratio(c2['p99'], c1['p99'])} |",
                "| forwarding's part: dlockd's ratio / the ceiling's | "
                + " | ".join(fmt_ratio_of_ratios(two[k], d[k], c2[k], c1[k])
                             for k in ("rps", "cpu", "p99")) + " |",
            ]
        # The same for the baseline; last, so that the rows above keep their places.
        b1, b2 = summary.get("dlockd-base"), summary.get("dlockd-base-2w")
        if b1 and b2:
            lines.append(
                f"| dlockd-base 2 workers / 1 worker | {fmt_ratio(b2['rps'], b1['rps'])} | "
                f"{fmt_ratio(b2['cpu'], b1['cpu'])} | {fmt_ratio(b2['p99'], b1['p99'])} |"
            )
    low = [n for n in servers if n in summary and summary[n]["ticks"] is not None
           and summary[n]["ticks"] < MIN_CPU_TICKS]
    if low:
        lines += ["", f"CPU time of {', '.join(low)} was under {MIN_CPU_TICKS} clock ticks "
                      "in a run: its CPU per request is coarse."]
    return "\n".join(lines)


def workload_servers(args, workload):
    """The servers of one workload's tables, in alternation order: those compare starts,
    then the external servers (uncontended only: the workload a Dapr client sends)."""
    servers = [s for s in WORKLOAD_SERVERS[workload] if s in args.servers]
    if workload == "uncontended":
        servers += [e.name for e in getattr(args, "externals", [])]
    return servers


def external_labels(args):
    return {e.name: f"{e.name} (external, {e.target}; not started by compare)"
            for e in getattr(args, "externals", [])}


def side_by_side(args, bins, workdir):
    workloads = ["uncontended", "contended", "churn"] if args.all else ["uncontended"]
    configs = [
        (w, p, d)
        for w in workloads
        for p in args.placements
        for d in args.depths
    ]
    total = sum(len(workload_servers(args, w)) for w, _, _ in configs) * args.rounds
    externals = {e.name: e for e in getattr(args, "externals", [])}
    notes = {}
    tables = []
    done = 0
    started = time.monotonic()
    for workload, placement, depth in configs:
        servers = workload_servers(args, workload)
        runs = {s: [] for s in servers}
        for rnd in range(args.rounds):
            for name in servers:
                done += 1
                if name in externals:
                    r = measure_external(args, bins, externals[name], workload, placement,
                                         depth, notes)
                else:
                    r = measure_one(args, bins, workdir, name, workload, placement, depth,
                                    notes)
                runs[name].append(r)
                log(
                    f"[{done}/{total}] {workload} {placement} depth {depth} round {rnd + 1} "
                    f"{name}: {fmt_rate(r['rps'])} req/s, p50 {fmt_us(r['p50_us'])} µs, "
                    f"p99 {fmt_us(r['p99_us'])} µs, server CPU {fmt_cpu(r['server_cpu_us'])} "
                    f"µs/req, {fmt_cpu(r['server_sleeps_per_kreq'])} sleeps/1k req"
                )
        summary = {s: summarize(v) for s, v in runs.items() if v}
        title = f"{workload}, {placement}, depth {depth}, {args.connections} connections"
        tables.append(side_by_side_table(title, summary, servers, labels=external_labels(args),
                                         placement=placement, depth=depth,
                                         connections=args.connections,
                                         externals=list(externals)))
    log(f"== {done} runs in {time.monotonic() - started:.0f} s")
    if any("dlockd-datadir" in WORKLOAD_SERVERS[w] for w in workloads) and \
            "dlockd-datadir" in args.servers:
        notes["data dir"] = data_dir_note(workdir)
    if any(s in ETCD_SERVERS or s in ETCD_STORE_SERVERS for s in args.servers):
        notes["etcd"] = etcd_note(workdir)
    return tables, notes
