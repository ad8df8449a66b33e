"""--instructions: user-space instructions per request under callgrind."""

import glob
import re
import signal
import subprocess
import time
from pathlib import Path

from .client import loadgen_argv, run_loadgen, server_driver
from .common import Fail, log
from .config import (
    BASE_SERVERS, CALLGRIND_CONTROL_TIMEOUT_S, CLIENT_CPU, DATADIR_SERVERS, DLOCKD_SERVERS,
    INSTR_COUNT_TOLERANCE, INSTR_SERVERS, INSTR_WARMUP_REQUESTS, LABELS, LOADGEN_COUNT_TIMEOUT_S,
    PROBE_TIMEOUT_VALGRIND_S, READY_TIMEOUT_VALGRIND_S,
)
from .fmt import fmt_diff, fmt_ratio
from .probes import check_horizon_moved, check_probe, data_dir_note, horizon_mtime
from .procs import free_port
from .servers import Server, protocol_of, server_argv


def callgrind_total(out_prefix, before):
    """Wait for a new callgrind dump named `out_prefix`* and return its total Ir."""
    deadline = time.monotonic() + CALLGRIND_CONTROL_TIMEOUT_S
    while time.monotonic() < deadline:
        files = [f for f in glob.glob(out_prefix + "*") if f not in before]
        for f in sorted(files):
            try:
                text = Path(f).read_text(errors="replace")
            except OSError:
                continue
            # `totals:` is the sum over the dump; older dumps carry only `summary:`.
            m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(
                r"^summary:\s+(\d+)", text, re.M
            )
            if m:
                return int(m.group(1)), f
        time.sleep(0.2)
    raise Fail(f"no callgrind dump with a totals line appeared as {out_prefix}*")


def callgrind_control(flag, pid):
    cmd = ["callgrind_control", flag, str(pid)]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=CALLGRIND_CONTROL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise Fail(f"`{' '.join(cmd)}` did not finish") from None
    if r.returncode != 0 or "Error" in r.stdout:
        raise Fail(f"`{' '.join(cmd)}` failed:\n{r.stdout.strip()}")


def count_instructions(args, bins, workdir, name, depth, io_driver):
    """Instructions per request of `name` at `depth`. Returns (per request, total Ir,
    requests, startup line)."""
    port = free_port()
    out_prefix = str(Path(workdir) / f"callgrind-{name}-d{depth}-{port}.out")
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_prefix}"]
    argv, cpus = server_argv(name, bins, port, workdir, valgrind=valgrind, io_driver=io_driver)
    server = Server(name, argv, port, workdir, READY_TIMEOUT_VALGRIND_S, cpus)
    # The valgrind'ed server keeps CPU 0 to itself; the client runs on CPU 1.
    cpu = CLIENT_CPU["split"]
    protocol = protocol_of(name)
    what = f"{name} under callgrind depth {depth}"
    try:
        server.start()
        if name in DLOCKD_SERVERS:
            check_probe(server, PROBE_TIMEOUT_VALGRIND_S)
        warm = loadgen_argv(bins, port, protocol, "uncontended", args.connections, depth, cpu,
                            ("requests", INSTR_WARMUP_REQUESTS), False)
        run_loadgen(warm, LOADGEN_COUNT_TIMEOUT_S, f"{what} (warm-up)")
        server.check_alive()
        callgrind_control("-z", server.proc.pid)
        horizon_before = horizon_mtime(server)
        n = args.requests
        measured = loadgen_argv(bins, port, protocol, "uncontended", args.connections, depth,
                                cpu, ("requests", n), False)
        result = run_loadgen(measured, LOADGEN_COUNT_TIMEOUT_S, what)
        server.check_alive()
        check_horizon_moved(server, horizon_before, what)
        before = set(glob.glob(out_prefix + "*"))
        callgrind_control("-d", server.proc.pid)
        total, _ = callgrind_total(out_prefix, before)
        line = server.startup_line()
    finally:
        # A valgrind'ed io_uring process ignores SIGTERM: it has dumped, so kill it.
        server.stop(signal.SIGKILL)
    done = result["requests"]
    if abs(done - n) > n * INSTR_COUNT_TOLERANCE:
        raise Fail(f"{what}: asked for {n} requests, the client reports {done}")
    return total / done, total, done, line


def instructions(args, bins, workdir):
    notes = {}
    per = {}
    drivers = {}
    # dlockd-datadir is counted in a table of its own, on the legacy driver (see
    # datadir_instructions); the main table keeps one driver per server.
    main = [s for s in INSTR_SERVERS if s in args.servers and s not in DATADIR_SERVERS]
    for depth in args.depths:
        for name in main:
            io_driver = None
            if name in ("dlockd", "dlockd-base", "dlockd-nometrics", "ceiling"):
                # The baseline starts on the driver dlockd ended up on.
                io_driver = drivers.get(name, drivers.get(BASE_SERVERS.get(name), "uring"))
            try:
                ipr, total, done, line = count_instructions(args, bins, workdir, name, depth,
                                                            io_driver)
            except Fail as e:
                if io_driver != "uring":
                    raise
                log(f"compare: {name} on io_uring under valgrind failed; retrying on the "
                    f"legacy (epoll) driver. The failure:\n{e}")
                io_driver = "legacy"
                ipr, total, done, line = count_instructions(args, bins, workdir, name, depth,
                                                            io_driver)
            if io_driver:
                drivers[name] = io_driver
                notes[f"{name} driver under valgrind"] = server_driver(line) or (
                    f"--io-driver {io_driver} (its start-up line did not say)"
                )
            per[(name, depth)] = ipr
            log(f"{name} depth {depth}: {total} Ir / {done} requests = {ipr:,.0f} per request")
    sections = [instructions_table(args, per, main)] if main else []
    # dlockd's counts on the legacy driver, by depth: the data dir's and the cross-shard
    # table both compare against it, and a count repeats almost exactly.
    legacy = {}
    if "dlockd-datadir" in args.servers:
        sections.append(datadir_instructions(args, bins, workdir, notes, legacy))
    if "dlockd" in args.servers and "dlockd-2w" in args.servers:
        sections.append(cross_shard_instructions(args, bins, workdir, notes, legacy))
    return sections, notes


def instructions_table(args, per, servers):
    """The main table: a row per server of `servers` with its instructions per request at
    each depth (`per`: {(server, depth): count}), then dlockd's ratios to the others, and
    with a baseline dlockd's difference to it."""
    lines = [
        f"### user-space instructions per request (callgrind), uncontended, "
        f"{args.connections} connections, {args.requests} requests after "
        f"{INSTR_WARMUP_REQUESTS} of warm-up",
        "",
        "| server | " + " | ".join(f"depth {d}" for d in args.depths) + " |",
        "|---|" + "---:|" * len(args.depths),
    ]
    for name in servers:
        cells = [f"{per[(name, d)]:,.0f}" for d in args.depths]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    if "dlockd" in servers:
        for other in ("dlockd-base", "dlockd-nometrics", "ceiling", "redis"):
            if other in servers:
                cells = [fmt_ratio(per[("dlockd", d)], per[(other, d)]) for d in args.depths]
                lines.append(f"| ratio dlockd / {other} | " + " | ".join(cells) + " |")
        if "dlockd-base" in servers:
            cells = [fmt_diff(per[("dlockd", d)] - per[("dlockd-base", d)]) for d in args.depths]
            lines.append("| difference, dlockd − dlockd-base (instructions per request) | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def datadir_instructions(args, bins, workdir, notes, legacy):
    """Instructions per request of dlockd with a fresh data dir against without, both on the
    legacy driver: under valgrind, which runs one thread at a time, a worker waiting in
    io_uring_enter keeps the persister thread from running for seconds, so grants wait for the
    horizon (polling) as they do not natively; epoll_wait lets it run. The code the data dir
    adds is the same on either driver, so the difference per request carries over to
    io_uring. Fills `legacy` with dlockd's counts."""
    per = {}
    for depth in args.depths:
        for name in ("dlockd", "dlockd-datadir"):
            if name == "dlockd" and depth in legacy:
                per[(name, depth)] = legacy[depth]
                continue
            ipr, total, done, line = count_instructions(args, bins, workdir, name, depth, "legacy")
            per[(name, depth)] = ipr
            if name == "dlockd":
                legacy[depth] = ipr
            else:
                notes["dlockd-datadir driver under valgrind"] = server_driver(line) or (
                    "--io-driver legacy (its start-up line did not say)")
            log(f"{name} (legacy) depth {depth}: {total} Ir / {done} requests = "
                f"{ipr:,.0f} per request")
    notes["data dir"] = (data_dir_note(workdir) + "; counted with and without it on "
                         "`--io-driver legacy`, all threads (the persister's too)")
    lines = [
        f"### the data dir: user-space instructions per request (callgrind), epoll driver, "
        f"uncontended, {args.connections} connections",
        "",
        "| server | " + " | ".join(f"depth {d}" for d in args.depths) + " |",
        "|---|" + "---:|" * len(args.depths),
    ]
    for name in ("dlockd", "dlockd-datadir"):
        cells = [f"{per[(name, d)]:,.0f}" for d in args.depths]
        lines.append(f"| {LABELS[name]}, `--io-driver legacy` | " + " | ".join(cells) + " |")
    cells = [fmt_ratio(per[("dlockd-datadir", d)], per[("dlockd", d)]) for d in args.depths]
    lines.append("| ratio dlockd-datadir / dlockd (data dir on / off) | "
                 + " | ".join(cells) + " |")
    cells = [fmt_diff(per[("dlockd-datadir", d)] - per[("dlockd", d)]) for d in args.depths]
    lines.append("| difference, on − off (instructions per request) | "
                 + " | ".join(cells) + " |")
    return "\n".join(lines)


def cross_shard_instructions(args, bins, workdir, notes, legacy):
    """Instructions per request of dlockd with 2 workers against 1, both on the legacy
    driver: under valgrind, which runs one thread at a time, a worker parked in io_uring is
    not woken by another's message, so only epoll serves 2 workers there."""
    per = {}
    names = ["dlockd", "dlockd-2w"]
    if "dlockd-base-2w" in args.servers:
        names += ["dlockd-base", "dlockd-base-2w"]
    for depth in args.depths:
        for name in names:
            if name == "dlockd" and depth in legacy:
                per[(name, depth)] = legacy[depth]
                continue
            ipr, total, done, _ = count_instructions(args, bins, workdir, name, depth, "legacy")
            per[(name, depth)] = ipr
            if name == "dlockd":
                legacy[depth] = ipr
            log(f"{name} (legacy) depth {depth}: {total} Ir / {done} requests = "
                f"{ipr:,.0f} per request")
    notes["cross-shard rows"] = ("dlockd with `--io-driver legacy`, 1 and 2 workers; "
                                 "all threads counted")
    return cross_shard_table(args, per, names)


def cross_shard_table(args, per, names):
    """The cross-shard table: dlockd with 1 and 2 workers and their ratio, and the same for
    the baseline when `names` has it, with dlockd's 2 workers over the baseline's."""
    lines = [
        f"### the cross-shard path: user-space instructions per request (callgrind), "
        f"epoll driver, uncontended, {args.connections} connections",
        "",
        "| server | " + " | ".join(f"depth {d}" for d in args.depths) + " |",
        "|---|" + "---:|" * len(args.depths),
    ]
    for name in ("dlockd", "dlockd-2w"):
        cells = [f"{per[(name, d)]:,.0f}" for d in args.depths]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    cells = [fmt_ratio(per[("dlockd-2w", d)], per[("dlockd", d)]) for d in args.depths]
    lines.append("| ratio 2 workers / 1 worker | " + " | ".join(cells) + " |")
    if "dlockd-base-2w" in names:
        for name in ("dlockd-base", "dlockd-base-2w"):
            cells = [f"{per[(name, d)]:,.0f}" for d in args.depths]
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
        cells = [fmt_ratio(per[("dlockd-base-2w", d)], per[("dlockd-base", d)])
                 for d in args.depths]
        lines.append("| ratio 2 workers / 1 worker, dlockd-base | " + " | ".join(cells) + " |")
        cells = [fmt_ratio(per[("dlockd-2w", d)], per[("dlockd-base-2w", d)])
                 for d in args.depths]
        lines.append("| ratio dlockd-2w / dlockd-base-2w | " + " | ".join(cells) + " |")
    return "\n".join(lines)
