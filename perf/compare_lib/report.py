"""The report: the section's head (commit, machine, how it ran) and RESULTS.md."""

import datetime
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .client import loadgen_argv
from .common import log
from .config import (
    BASE_SERVERS, BUSY_SAMPLE_S, BUSY_WARN, CLIENT_CPU, ETCD_SERVERS, ETCD_STORE_SERVERS,
    PROBE_ETCD_KEY, PROBE_REDIS_KEY, PROBE_STORE, RESULTS, ROOT, SERVER_CPU, TWO_WORKER_CPUS,
    UDS_APP_ID, UDS_TARGETS_CONNECTIONS,
)
from .procs import clock_ticks


def git_commit():
    def git(*a):
        r = subprocess.run(["git", "--no-optional-locks", *a], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown (not a git checkout)"
    # RESULTS.md is written by this script: its own changes do not make the tree dirty.
    dirty = git("status", "--porcelain", "--", ".", ":(exclude)perf/RESULTS.md")
    return head + ("-dirty" if dirty else "")


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def busy_per_cpu(seconds=BUSY_SAMPLE_S):
    """{cpu: fraction busy} over `seconds`, from /proc/stat: load left by other programs
    would land on the servers and the client alike and make the numbers noisy."""

    def sample():
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            m = re.match(r"cpu(\d+)\s+(.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
                out[int(m.group(1))] = (sum(v[:8]), idle)
        return out

    a = sample()
    time.sleep(seconds)
    b = sample()
    busy = {}
    for cpu, (total, idle) in b.items():
        if cpu in a:
            dt, di = total - a[cpu][0], idle - a[cpu][1]
            busy[cpu] = 1 - di / dt if dt > 0 else 0.0
    return busy


def machine_lines(notes, noisy_matters):
    lines = [
        f"- machine: nproc {len(os.sched_getaffinity(0))} (of {os.cpu_count()} CPUs), "
        f"{cpu_model()}, kernel {os.uname().release}",
    ]
    busy = notes.get("busy")
    if busy:
        text = ", ".join(f"CPU {c} {b:.0%}" for c, b in sorted(busy.items()))
        noisy = noisy_matters and any(b > BUSY_WARN for b in busy.values())
        lines.append(
            f"- busy before the run (other programs): {text}"
            + (" (**other load was running: these numbers are noisy**)" if noisy else "")
        )
    for key in ("dlockd driver", "dlockd-base driver", "ceiling driver",
                "dlockd driver under valgrind", "dlockd-base driver under valgrind",
                "dlockd-datadir driver under valgrind", "dlockd-nometrics driver under valgrind",
                "ceiling driver under valgrind", "loadgen driver", "loadgen driver, etcd",
                "data dir", "etcd"):
        if notes.get(key):
            lines.append(f"- {key}: {notes[key]}")
    return lines


def baseline_line(args):
    """The head's line about --baseline: which commit dlockd-base is, and how it was built
    and run."""
    mirrors = [f"{b} as {of}" for b, of in BASE_SERVERS.items() if b in args.servers]
    return (f"- baseline: {args.baseline_short} ({args.baseline_commit}, "
            f"\"{args.baseline_subject}\"; `--baseline {args.baseline}`): dlockd built from "
            "that commit with `cargo build --release --bin dlockd` in a temporary git worktree "
            "into a target dir of its own, and run exactly as dlockd is, with the same flags, "
            f"CPUs and client: {', '.join(mirrors)}")


def client_template(args):
    """The measured run's client command, with what varies between runs in capitals."""
    protocols = "http|resp|etcd" if set(args.servers) & set(ETCD_SERVERS) else "http|resp"
    argv = loadgen_argv({"dlockd-loadgen": "dlockd-loadgen"}, "PORT", protocols, "W",
                        args.connections, "D", "C", ("duration", args.duration), False)
    return " ".join(argv)


def etcd_head_lines(args):
    """The head's lines on the etcd servers in --servers."""
    lines = []
    anchors = [s for s in ETCD_SERVERS if s in args.servers]
    stores = [s for s in ETCD_STORE_SERVERS if s in args.servers]
    if anchors or stores:
        lines.append(
            "- etcd clusters: started by compare for every run (the anchors' and dlockd-etcd's "
            "alike), one member (etcd) or three (etcd-3) on loopback ports, each member with a "
            "new data dir and every member pinned to CPU "
            f"{SERVER_CPU} (Go's GOMAXPROCS follows the affinity: 1); etcd's defaults "
            "otherwise, as a production member keeps them: its WAL fsynced at every commit, "
            "`--snapshot-count` 100000, `--quota-backend-bytes` 0 (2 GiB), heartbeat 100 ms, "
            "election timeout 1000 ms, no auto-compaction; ready once every member's /health "
            "says true. etcd-3's three members share CPU "
            f"{SERVER_CPU} with each other (and with dlockd, and in colo with the client), "
            "where a real cluster has a machine and a disk per member")
    if anchors:
        lines.append(
            f"- {' and '.join(anchors)}: etcd driven directly by the client, `--protocol etcd "
            "--target` every member (connection i to member i mod n), with the calls dlockd's "
            "lock.etcd store makes: per lock `LeaseGrant`, then one `Txn` (the key and its "
            "waiter keys absent: `Put` of the key under the lease; else `Range`), then, "
            "refused, `LeaseRevoke`; per unlock one `Txn` (the value is the owner: `Range` and "
            "`DeleteRange`; else `Range`), then `LeaseRevoke` of the deleted key's lease, each "
            "revoke after the answer as dlockd sends it; keys `lock||<resourceId>`, one "
            "request per lock or unlock. Checked warm-up; every measured run moved etcd's "
            "revision by at least one per request, and left no lock key and no lease")
    if stores:
        lines.append(
            f"- {' and '.join(stores)}: dlockd, 1 worker, `--resources-path` with one component "
            f"file making `{PROBE_STORE}` a `lock.etcd` store on a cluster of its own made "
            "as the anchor's (`endpoints` every member; dlockd sends every call to the first "
            "and fails over to the others), `keyPrefix` default and no app id: keys "
            "`lock||<resourceId>`, as the anchor's client. **Its server CPU is dlockd's "
            "process alone**; its etcd's is given under each table. Every start's probe "
            f"try-lock created `{PROBE_ETCD_KEY}` in etcd on a lease of the probe's expiry, "
            "with its create revision as Dapr-Lock-Fence, and its unlock deleted it; every "
            "measured run moved etcd's revision by at least one per request (less the "
            "unlocks answered wrong), and dlockd's /metrics counted no error answer. Its "
            "warm-up is checked at depth 1 only (see the wrong answers under the tables); "
            "at depth 1 its runs had no wrong answer and left no lock key and no lease")
    return lines


def section_text(kind, args, tables, notes, head=None, now=None, commit=None, command=None):
    """The RESULTS.md section of a comparison: its title, its head (command, commit, machine,
    how it ran) and its tables. `head`: the mode's own lines about how it ran (side by side
    and instructions have theirs here). `now`, `commit` and `command` default to the present
    time, the checkout's commit and this process's command line."""
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if command is None:
        command = shlex.join(["perf/compare", *sys.argv[1:]])
    if commit is None:
        commit = git_commit()
    title = f"## {now} · {commit} · {kind}"
    if args.baseline_commit is not None:
        title += f" · baseline {args.baseline_short}"
    if args.quick:
        title += " · QUICK SMOKE RUN (not a measurement)"
    lines = [title, ""]
    if args.quick:
        if args.instructions:
            too_small = "too few requests for the start-up costs to wash out"
        elif args.memory:
            too_small = "too few leases for the fixed costs to wash out"
        else:
            too_small = "too short and too few rounds"
        lines += [
            f"> A `--quick` run: {too_small} for its numbers to be compared with anything; "
            "it shows only that the whole comparison runs.",
            "",
        ]
    lines += [f"- command: `{command}`", f"- commit: {commit}"]
    if args.baseline_commit is not None:
        lines.append(baseline_line(args))
    lines += machine_lines(notes, noisy_matters=not args.instructions)
    if head is not None:
        lines += head
    elif kind == "side by side":
        lines += [
            f"- runs: {args.rounds} round(s) of {args.duration:g} s per server, alternating, "
            f"each after a separate {args.warmup:g} s warm-up; medians over the rounds",
            f"- placement: server on CPU {SERVER_CPU} (dlockd, 2 workers: CPUs "
            f"{TWO_WORKER_CPUS}); "
            f"colo: client on CPU {CLIENT_CPU['colo']}, split: client on CPU "
            f"{CLIENT_CPU['split']}",
            f"- client, measured run: `{client_template(args)}` (C: the client's CPU, "
            "W: the workload, D: the depth; resp for redis-server; unix:PATH instead of "
            "127.0.0.1:PORT for a server on a Unix socket)",
            f"- server CPU: utime+stime of the server's processes from /proc/PID/stat "
            f"(CLK_TCK {clock_ticks()}), over the measured run, per request",
            "- server sleeps: voluntary context switches of the server's threads (and its "
            "processes') from /proc/PID/task/TID/status over the measured run, per 1,000 "
            "requests: how often a thread waited for work and had to be woken",
        ]
        uds = [n for n in ("dlockd-uds", "redis-uds") if n in args.servers]
        if uds:
            lines.append(
                f"- {' and '.join(uds)}: on a Unix domain socket in the run's temporary "
                "directory instead of loopback TCP, otherwise run exactly as "
                + " and ".join({"dlockd-uds": "dlockd", "redis-uds": "redis"}[n] for n in uds)
                + " (same flags, CPU and client; the client's `--target unix:PATH`): "
                + "; ".join({
                    "dlockd-uds": f"dlockd `-u DIR --app-id {UDS_APP_ID}` (HTTP on "
                                  f"DIR/dapr-{UDS_APP_ID}-http.socket, gRPC on "
                                  f"DIR/dapr-{UDS_APP_ID}-grpc.socket, the admin port on "
                                  "TCP; ready when GET /v1.0/healthz answers 204 over the "
                                  "socket)",
                    "redis-uds": "redis-server `--port 0 --unixsocket PATH --unixsocketperm "
                                 "700` (no TCP), the redis anchor's persistence off",
                }[n] for n in uds)
                + f". Their targets are read in colo at {UDS_TARGETS_CONNECTIONS} connections"
            )
        externals = getattr(args, "externals", [])
        if externals:
            lines.append(
                "- external servers, already running: compare neither started, stopped nor "
                "pinned them (colo and split place the client, on CPU 0 or 1; the servers "
                f"compare starts run on CPU {SERVER_CPU}, an external one where its own "
                "affinity lets it); each got one probe try-lock and unlock before the "
                "rounds, then the same client as the others (`--target ADDR --store STORE`, "
                "HTTP), after them in every round, uncontended only: "
                + "; ".join(e.describe() for e in externals)
            )
        lines += etcd_head_lines(args)
        if "dlockd-2w" in args.servers:
            lines.append(
                "- dlockd with 2 workers shares the 2 vCPUs with the client: its req/s and "
                "latency here do not show thread-per-core scaling (see perf/README.md)"
            )
        if "dlockd-redis" in args.servers:
            lines.append(
                f"- dlockd-redis: dlockd, 1 worker, `--resources-path` with one component "
                f"file making `{PROBE_STORE}` a `lock.redis` store on a fresh redis-server "
                f"of its own (the redis anchor's command line), both on CPU {SERVER_CPU}: in "
                "colo the client, dlockd and its redis-server share that core, in split the "
                "client has the other. Its server CPU is both processes'. Every start's probe "
                f"try-lock created the key `{PROBE_REDIS_KEY}` in that redis-server and its "
                "unlock removed it; every measured run sent it at least one SET or EVALSHA "
                "per request the client counted, and dlockd's /metrics counted no error "
                "answer (no 500)"
            )
    else:
        lines += [
            "- server on CPU 0 under `valgrind --tool=callgrind`, client on CPU 1; counters "
            "zeroed after the warm-up, dumped after the counted requests; user space only",
        ]
    lines.append("")
    for t in tables:
        lines += [t, ""]
    return "\n".join(lines)


def appended(old, section):
    """RESULTS.md's text with `section` added at its end; `old` is its text now, None when
    there is no RESULTS.md yet (it then starts with its title and a word on its sections)."""
    if old is None:
        return (
            "# perf/compare results\n\n"
            "Sections are appended by `perf/compare`, newest last. Each names its commit, its "
            "machine and the command that reproduces it; perf/README.md says how to read them.\n"
            "\n" + section
        )
    if not old.endswith("\n"):
        old += "\n"
    return old + "\n" + section


def write_results(kind, args, tables, notes, head=None, results=RESULTS):
    """Print the section and append it to `results` (RESULTS.md), unless --no-record."""
    section = section_text(kind, args, tables, notes, head)
    if args.no_record:
        log(f"== not appended to {results} (--no-record)")
    else:
        results.write_text(appended(results.read_text() if results.exists() else None, section))
        log(f"== appended to {results}")
    print(section)
