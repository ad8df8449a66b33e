"""The command line and the entry point."""

import argparse
import os
import shutil
import signal
import sys
import tempfile

from . import baseline
from .build import build, ensure_packages
from .common import Fail, Interrupted, log
from .config import (
    ALL_SERVERS, BASE_SERVERS, EXTERNAL_DEFAULT_STORE, BUSY_WARN, CLIENT_CPU, DEFAULT_CONNECTIONS, DEFAULT_DEPTHS,
    DEFAULT_SERVERS, ETCD_SERVERS, ETCD_STORE_SERVERS,
    DEFAULT_HANDOFF_CLIENTS, DEFAULT_PARKED_WAITERS, QUICK_PARKED_WAITERS,
    DEFAULT_DURATION_S, DEFAULT_INSTR_REQUESTS, DEFAULT_MEMORY_LEASES, DEFAULT_ROUNDS,
    DEFAULT_STORM_DURATION_S, DEFAULT_STORM_EXPIRY_S, DEFAULT_STORM_LEASES, DEFAULT_STORM_RATE,
    DEFAULT_WARMUP_S, QUICK_DURATION_S, QUICK_INSTR_REQUESTS, QUICK_MEMORY_LEASES,
    QUICK_STORM_DURATION_S, QUICK_STORM_EXPIRY_S, QUICK_STORM_LEASES, QUICK_STORM_RATE,
    STORM_SERVERS,
)
from .external import externals_from_args, probe_externals
from .handoff import handoff
from .instructions import instructions
from .memory import memory
from .open_loop import open_loop
from .parked import parked
from .report import busy_per_cpu, write_results
from .servers import stop_all
from .side_by_side import side_by_side
from .storm import storm


def parse_args(argv=None):
    """The command line (`argv`, default sys.argv[1:]), checked and with its defaults filled
    in; a bad one exits with the usage and the reason (status 2)."""
    p = argparse.ArgumentParser(
        prog="perf/compare",
        description="dlockd side by side with the ceiling, redis-server and nginx, on loopback.",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_DURATION_S:g} s x 1 round (instructions: "
                        f"{QUICK_INSTR_REQUESTS} requests): a smoke test")
    p.add_argument("--all", action="store_true",
                   help="also the contended and churn workloads (dlockd vs redis)")
    p.add_argument("--instructions", action="store_true",
                   help="count user-space instructions per request with callgrind instead")
    p.add_argument("--memory", action="store_true",
                   help="bytes of RSS per live lease, dlockd and redis-server, instead")
    p.add_argument("--expiry-storm", action="store_true",
                   help="open-loop latency while --storm-leases leases expire at once, "
                        "against the same run without them, instead")
    p.add_argument("--open-loop", action="store_true",
                   help="open-loop latency at half of redis-server's closed-loop maximum "
                        "(dlockd, the ceiling, redis-server) instead")
    p.add_argument("--handoff", action="store_true",
                   help="N clients contending for one lock: dlockd's acquire against polling "
                        "try-lock with a 50-500 ms backoff (dlockd and redis-server), with "
                        "the uncontended lock+unlock rate of one connection, instead")
    p.add_argument("--parked-waiters", action="store_true",
                   help="server CPU and memory of --waiters acquires parked for --duration s, "
                        "against an idle dlockd and the same connections idle, instead")
    p.add_argument("--clients", type=int, default=DEFAULT_HANDOFF_CLIENTS,
                   help=f"--handoff: clients contending (default {DEFAULT_HANDOFF_CLIENTS})")
    p.add_argument("--waiters", type=int, default=None,
                   help=f"--parked-waiters: parked acquires (default {DEFAULT_PARKED_WAITERS}; "
                        f"--quick {QUICK_PARKED_WAITERS})")
    p.add_argument("--leases", default=None,
                   help="--memory: lease counts, comma-separated (default "
                        + ",".join(map(str, DEFAULT_MEMORY_LEASES)) + "; --quick "
                        + ",".join(map(str, QUICK_MEMORY_LEASES)) + ")")
    p.add_argument("--storm-leases", type=int, default=None,
                   help=f"--expiry-storm: leases that expire together (default "
                        f"{DEFAULT_STORM_LEASES}; --quick {QUICK_STORM_LEASES})")
    p.add_argument("--storm-expiry", type=int, default=None,
                   help=f"--expiry-storm: their expiry in seconds (default "
                        f"{DEFAULT_STORM_EXPIRY_S}; --quick {QUICK_STORM_EXPIRY_S})")
    p.add_argument("--storm-rate", type=int, default=None,
                   help=f"--expiry-storm: the measured run's open-loop rate, req/s (default "
                        f"{DEFAULT_STORM_RATE}; --quick {QUICK_STORM_RATE})")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"rounds of alternation (default {DEFAULT_ROUNDS})")
    p.add_argument("--duration", type=float, default=None,
                   help=f"seconds per measured run (default {DEFAULT_DURATION_S:g}; "
                        f"--expiry-storm {DEFAULT_STORM_DURATION_S:g})")
    p.add_argument("--warmup", type=float, default=DEFAULT_WARMUP_S,
                   help=f"seconds of the unmeasured warm-up run (default {DEFAULT_WARMUP_S:g})")
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                   help=f"client connections (default {DEFAULT_CONNECTIONS})")
    p.add_argument("--depths", default=",".join(map(str, DEFAULT_DEPTHS)),
                   help="pipelining depths, comma-separated (default 1,16)")
    p.add_argument("--placements", default=None,
                   help="colo and/or split, comma-separated (default colo,split; "
                        "--expiry-storm colo)")
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                   help=f"a subset of {','.join(ALL_SERVERS)} (default: all but the etcd "
                        "ones, which need etcd and are measured side by side only)")
    p.add_argument("--requests", type=int, default=None,
                   help=f"--instructions: counted requests (default {DEFAULT_INSTR_REQUESTS})")
    p.add_argument("--baseline", metavar="REV", default=None,
                   help="also dlockd built from git revision REV of this repository, as "
                        "dlockd-base beside dlockd (and dlockd-base-2w beside dlockd-2w), run "
                        "exactly as they are: side by side or with --instructions")
    p.add_argument("--external", action="append", metavar="NAME=ADDR[@PID]", default=[],
                   help="side by side: also an already running Dapr-compatible server (a "
                        "daprd sidecar, a dlockd of your own) at ADDR, HOST:PORT or unix:PATH "
                        "(its HTTP API), driven by the same client in the same rounds. compare "
                        "never starts, stops or pins it; with @PID (or @PID,PID) its server "
                        "CPU is read from /proc, else shown as '–'. Repeatable")
    p.add_argument("--external-store", action="append", metavar="NAME=STORE", default=[],
                   help="the lock store the client names for --external NAME (default "
                        f"{EXTERNAL_DEFAULT_STORE}). Repeatable")
    p.add_argument("--no-record", action="store_true",
                   help="print the section but do not append it to perf/RESULTS.md")
    args = p.parse_args(argv)

    modes = [m for m in ("instructions", "memory", "expiry_storm", "open_loop", "handoff",
                         "parked_waiters")
             if getattr(args, m)]
    if len(modes) > 1:
        p.error("give at most one of --instructions, --memory, --expiry-storm, --open-loop, "
                "--handoff, --parked-waiters")
    if args.all and modes:
        p.error("--all adds workloads to the side-by-side comparison; it does not combine "
                "with --" + modes[0].replace("_", "-"))
    if args.placements is None:
        args.placements = "colo" if args.expiry_storm else "colo,split"
    if args.leases is None:
        args.leases = QUICK_MEMORY_LEASES if args.quick else DEFAULT_MEMORY_LEASES
    else:
        try:
            args.leases = [int(x) for x in args.leases.split(",") if x]
        except ValueError:
            p.error(f"--leases: expected numbers, got {args.leases!r}")
        if not args.leases or min(args.leases) < 1:
            p.error("--leases: at least one count, each at least 1")
    if args.storm_leases is None:
        args.storm_leases = QUICK_STORM_LEASES if args.quick else DEFAULT_STORM_LEASES
    if args.storm_expiry is None:
        args.storm_expiry = QUICK_STORM_EXPIRY_S if args.quick else DEFAULT_STORM_EXPIRY_S
    if args.storm_rate is None:
        args.storm_rate = QUICK_STORM_RATE if args.quick else DEFAULT_STORM_RATE
    if args.storm_leases < 1 or args.storm_expiry < 1 or args.storm_rate < 1:
        p.error("--storm-leases, --storm-expiry and --storm-rate must be positive")
    if args.expiry_storm and args.duration is None:
        args.duration = QUICK_STORM_DURATION_S if args.quick else DEFAULT_STORM_DURATION_S
    if args.expiry_storm and args.storm_expiry >= args.duration:
        p.error("--storm-expiry must be shorter than --duration: the leases must end inside "
                "the measured run")
    if args.rounds is None:
        args.rounds = 1 if args.quick else DEFAULT_ROUNDS
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S
    if args.requests is None:
        args.requests = QUICK_INSTR_REQUESTS if args.quick else DEFAULT_INSTR_REQUESTS
    try:
        args.depths = [int(d) for d in args.depths.split(",") if d]
    except ValueError:
        p.error(f"--depths: expected numbers, got {args.depths!r}")
    args.placements = [x for x in args.placements.split(",") if x]
    args.servers = [x for x in args.servers.split(",") if x]
    for x in args.placements:
        if x not in CLIENT_CPU:
            p.error(f"--placements: unknown placement {x!r} (colo, split)")
    for x in args.servers:
        if x not in ALL_SERVERS:
            p.error(f"--servers: unknown server {x!r} ({', '.join(ALL_SERVERS)})")
    if args.rounds < 1 or args.duration <= 0 or args.warmup <= 0 or args.connections < 1:
        p.error("--rounds, --duration, --warmup and --connections must be positive")
    if args.waiters is None:
        args.waiters = QUICK_PARKED_WAITERS if args.quick else DEFAULT_PARKED_WAITERS
    if args.clients < 2 or args.waiters < 1:
        p.error("--clients must be at least 2 and --waiters at least 1")
    if args.parked_waiters and args.duration > 45:
        p.error("--parked-waiters: --duration at most 45 s (the acquires wait 60 s)")
    if (args.handoff or args.parked_waiters) and "dlockd" not in args.servers:
        p.error("--handoff and --parked-waiters measure dlockd: --servers must name it")
    if not args.depths or min(args.depths) < 1:
        p.error("--depths: at least one depth, each at least 1")
    if args.requests < 1:
        p.error("--requests must be positive")
    if not args.placements or not args.servers:
        p.error("--placements and --servers must name at least one")
    etcd = [s for s in args.servers if s in ETCD_SERVERS or s in ETCD_STORE_SERVERS]
    if etcd and modes:
        p.error(f"{etcd[0]} is measured side by side only: it does not combine with --"
                + modes[0].replace("_", "-"))
    if args.open_loop and "redis" not in args.servers:
        p.error("--open-loop needs redis in --servers: its rate is half of redis-server's")
    if (args.memory or args.expiry_storm) and not set(args.servers) & set(STORM_SERVERS):
        p.error(f"--memory and --expiry-storm measure {' and '.join(STORM_SERVERS)}: "
                "--servers names neither")
    args.baseline_commit = args.baseline_short = args.baseline_subject = None
    if args.baseline is not None:
        with_baseline(p, args)
    with_externals(p, args, modes)
    return args


def with_externals(p, args, modes):
    """--external and --external-store: checked, as args.externals (External servers, in
    the order given; they follow the servers compare starts in every round)."""
    if (args.external or args.external_store) and modes:
        p.error("--external puts a running server into the side-by-side tables; it does not "
                "combine with --" + modes[0].replace("_", "-"))
    try:
        args.externals = externals_from_args(args.external, args.external_store)
    except ValueError as e:
        p.error(str(e))


def with_baseline(p, args):
    """--baseline: checks it, names its commit in `args` (baseline_commit, baseline_short,
    baseline_subject) and adds each baseline server right after its counterpart in
    args.servers."""
    modes = [m for m in ("memory", "expiry_storm", "open_loop", "handoff", "parked_waiters")
             if getattr(args, m)]
    if modes:
        p.error("--baseline adds dlockd-base to the side-by-side tables and to --instructions; "
                "it does not combine with --" + modes[0].replace("_", "-"))
    counterparts = ["dlockd"] if args.instructions else list(BASE_SERVERS.values())
    if not set(counterparts) & set(args.servers):
        p.error("--baseline measures the baseline beside " + " or ".join(counterparts)
                + ": --servers names " + ("neither" if len(counterparts) > 1 else "no dlockd"))
    found = baseline.resolve(args.baseline)
    if found is None:
        p.error(f"--baseline: {args.baseline!r} names no commit of this repository")
    args.baseline_commit, args.baseline_short, args.baseline_subject = found
    servers = []
    for name in args.servers:
        servers.append(name)
        servers += [b for b, of in BASE_SERVERS.items() if of == name]
    args.servers = servers


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main():
    args = parse_args()
    # Explicitly: a shell that starts this in the background would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        raise Fail(f"CPUs 0 and 1 must both be available (this process may use {sorted(cpus)})")
    if args.externals:
        for ext in args.externals:
            log(f"compare: external server {ext.name} at {ext.target} (store {ext.store}): "
                "already running; compare neither starts nor stops it")
        # Before the build: an address nothing answers on fails in seconds, not minutes.
        probe_externals(args.externals)
    ensure_packages(etcd=any(s in ETCD_SERVERS or s in ETCD_STORE_SERVERS
                             for s in args.servers))
    bins = build()
    workdir = tempfile.mkdtemp(prefix="dlockd-compare-")
    try:
        if args.baseline_commit is not None:
            bins["dlockd-base"] = baseline.build_baseline(args.baseline_commit,
                                                          args.baseline_short, workdir)
        busy = busy_per_cpu()
        # Instruction counts do not depend on other load; times and rates do.
        if not args.instructions and any(b > BUSY_WARN for b in busy.values()):
            log("compare: warning: other programs keep the CPUs busy ("
                + ", ".join(f"CPU {c} {b:.0%}" for c, b in sorted(busy.items()))
                + "): the numbers will be noisy")
        if args.instructions:
            tables, notes = instructions(args, bins, workdir)
            notes["busy"] = busy
            write_results("user-space instructions per request", args, tables, notes)
        elif args.memory:
            tables, notes, head = memory(args, bins, workdir)
            notes["busy"] = busy
            write_results("memory per lease", args, tables, notes, head)
        elif args.expiry_storm:
            tables, notes, head = storm(args, bins, workdir)
            notes["busy"] = busy
            write_results("expiry storm", args, tables, notes, head)
        elif args.handoff:
            tables, notes, head = handoff(args, bins, workdir)
            notes["busy"] = busy
            write_results("handoff", args, tables, notes, head)
        elif args.parked_waiters:
            tables, notes, head = parked(args, bins, workdir)
            notes["busy"] = busy
            write_results("parked waiters", args, tables, notes, head)
        elif args.open_loop:
            tables, notes, head = open_loop(args, bins, workdir)
            notes["busy"] = busy
            write_results("open loop at half of redis-server's maximum", args, tables, notes,
                          head)
        else:
            tables, notes = side_by_side(args, bins, workdir)
            notes["busy"] = busy
            write_results("side by side", args, tables, notes)
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def run():
    """perf/compare's entry point: main(), and the exit status and clean-up of each way out."""
    try:
        main()
    except Fail as e:
        stop_all()
        log(f"compare: error: {e}")
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted) as e:
        stop_all()
        log(f"compare: interrupted ({str(e) or 'SIGINT'}); every server started here is stopped")
        sys.exit(130)
