"""Tests of perf/compare's pure parts: the command line, the tables, the ratios, the section
written to RESULTS.md, the server and client command lines, and --baseline's git worktree.
No server is started and nothing is built (the baseline's cargo build is replaced):
`python3 -m unittest discover -s perf -p 'test_*.py'` runs them in a few seconds. They need
a git checkout of the repository (--baseline HEAD).
"""

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_lib import baseline, config, etcdapi  # noqa: E402
from compare_lib.common import Fail  # noqa: E402
from compare_lib.cli import parse_args  # noqa: E402
from compare_lib.client import client_target, loadgen_argv, server_driver  # noqa: E402
from compare_lib.external import External, parse_external, probe_externals  # noqa: E402
from compare_lib.fmt import (  # noqa: E402
    fmt_cpu, fmt_diff, fmt_mib, fmt_ms, fmt_rate, fmt_ratio, fmt_ratio_of_ratios, fmt_us,
)
from compare_lib.handoff import (  # noqa: E402
    fmt_fairness, fmt_times, handoff_argv, handoff_runs, handoff_table, summarize_handoff,
    summarize_one_connection, targets_rows,
)
from compare_lib.instructions import (  # noqa: E402
    callgrind_total, cross_shard_table, instructions_table,
)
from compare_lib.leases import dlockd_lease_flags, fill_argv, fill_connections  # noqa: E402
from compare_lib.open_loop import open_loop_table  # noqa: E402
from compare_lib.parked import parked_flags, parked_summary, parked_table  # noqa: E402
from compare_lib.report import appended, section_text, write_results  # noqa: E402
from compare_lib.servers import (  # noqa: E402
    EtcdCluster, Server, answers_ready, etcd_member_argv, new_server, protocol_of, server_argv,
)
from compare_lib.side_by_side import (  # noqa: E402
    external_labels, side_by_side_table, summarize, warm_up_checked, workload_servers,
)

BINS = {"dlockd": "/b/dlockd", "dlockd-ceiling": "/b/dlockd-ceiling",
        "dlockd-loadgen": "/b/dlockd-loadgen"}


def quiet(fn, *a, **kw):
    """fn(*a, **kw) with its stdout and stderr captured: (result, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        result = fn(*a, **kw)
    return result, out.getvalue(), err.getvalue()


def usage_error(argv):
    """The message of the usage error parse_args(argv) exits with (status 2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse_args(argv)
        except SystemExit as e:
            if e.code != 2:
                raise AssertionError(f"exit {e.code}, not 2, for {argv}") from None
            return err.getvalue()
    raise AssertionError(f"{argv} was accepted")


def run(rps, p99=100.0, cpu_us=5.0, ticks=500, client_ns=4000, **extra):
    """One client result as measure_one returns it."""
    r = {"rps": rps, "p50_us": p99 / 2, "p99_us": p99, "p999_us": p99 * 2, "max_us": p99 * 4,
         "server_cpu_us": cpu_us, "server_cpu_ticks": ticks, "server_sleeps_per_kreq": 1.5,
         "client_cpu_ns_per_req": client_ns}
    r.update(extra)
    return r


def summary(rps, p99, cpu, ticks=500):
    return summarize([run(rps, p99=p99, cpu_us=cpu, ticks=ticks)])


class Formatting(unittest.TestCase):
    def test_rates(self):
        self.assertEqual(fmt_rate(1_234_567), "1.23 M")
        self.assertEqual(fmt_rate(45_849), "45.8 k")
        self.assertEqual(fmt_rate(999), "999")

    def test_latencies_and_cpu(self):
        self.assertEqual(fmt_us(None), "–")
        self.assertEqual(fmt_us(99.94), "99.9")
        self.assertEqual(fmt_us(100.4), "100")
        self.assertEqual(fmt_cpu(None), "–")
        self.assertEqual(fmt_cpu(5.126), "5.13")
        self.assertEqual(fmt_mib(2048), "2.0")
        self.assertEqual(fmt_ms(1500), "1.5")

    def test_ratios(self):
        self.assertEqual(fmt_ratio(3, 2), "1.50")
        self.assertEqual(fmt_ratio(1, 0), "–")
        self.assertEqual(fmt_ratio(None, 1), "–")
        self.assertEqual(fmt_ratio(1, None), "–")
        # (4 / 2) / (3 / 3)
        self.assertEqual(fmt_ratio_of_ratios(4, 2, 3, 3), "2.00")
        self.assertEqual(fmt_ratio_of_ratios(4, 2, 0, 3), "–")
        self.assertEqual(fmt_ratio_of_ratios(4, None, 3, 3), "–")

    def test_differences(self):
        self.assertEqual(fmt_diff(1234.4), "+1,234")
        self.assertEqual(fmt_diff(-56.6), "-57")
        self.assertEqual(fmt_diff(-0.3), "+0")


class Summaries(unittest.TestCase):
    def test_medians_and_ranges_over_rounds(self):
        s = summarize([run(10, p99=300, cpu_us=3), run(30, p99=100, cpu_us=1, ticks=50),
                       run(20, p99=200, cpu_us=2)])
        self.assertEqual((s["rps"], s["rps_min"], s["rps_max"]), (20, 10, 30))
        self.assertEqual((s["p99"], s["p99_min"], s["p99_max"]), (200, 100, 300))
        self.assertEqual(s["cpu"], 2)
        self.assertEqual(s["ticks"], 50)  # the coarsest run counts
        self.assertEqual(s["client_cpu"], 4.0)  # ns -> µs
        self.assertIsNone(s["companion_cpu"])
        self.assertEqual(s["runs"], 3)

    def test_missing_client_cpu_and_companion(self):
        s = summarize([run(10, client_ns=None, companion_cpu_us=0.5),
                       run(10, client_ns=None, companion_cpu_us=1.5)])
        self.assertIsNone(s["client_cpu"])
        self.assertEqual(s["companion_cpu"], 1.0)


class SideBySideTable(unittest.TestCase):
    def test_rows_and_ratios(self):
        sums = {"dlockd": summary(40_000, 200, 5.0), "ceiling": summary(20_000, 400, 10.0),
                "redis": summary(80_000, 100, 2.5)}
        t = side_by_side_table("uncontended, colo, depth 1, 64 connections", sums,
                               ["dlockd", "ceiling", "redis"])
        lines = t.splitlines()
        self.assertEqual(lines[0], "### uncontended, colo, depth 1, 64 connections")
        self.assertIn("| dlockd, 1 worker | 40.0 k | 40.0 k–40.0 k | 100 | 200 | 400 | 5.00 | "
                      "4.00 | 1.50 |", lines)
        self.assertIn("| dlockd / ceiling | 2.00 | 0.50 | 0.50 |", lines)
        self.assertIn("| dlockd / redis | 0.50 | 2.00 | 2.00 |", lines)
        self.assertNotIn("| dlockd / nginx", t)
        self.assertNotIn("clock ticks", t)
        self.assertNotIn("cross-shard", t)

    def test_no_ratios_without_dlockd(self):
        t = side_by_side_table("x", {"redis": summary(1, 1, 1)}, ["redis"])
        self.assertNotIn("| ratio |", t)

    def test_cross_shard_and_the_forwardings_part(self):
        sums = {"dlockd": summary(100, 100, 4.0), "dlockd-2w": summary(80, 150, 8.0),
                "ceiling": summary(200, 100, 2.0), "ceiling-2w": summary(200, 100, 3.0)}
        t = side_by_side_table("x", sums, ["dlockd", "dlockd-2w", "ceiling", "ceiling-2w"])
        self.assertIn("| dlockd 2 workers / 1 worker | 0.80 | 2.00 | 1.50 |", t)
        self.assertIn("| ceiling 2 workers / 1 worker | 1.00 | 1.50 | 1.00 |", t)
        # dlockd's ratio over the ceiling's: 0.8 / 1, 2 / 1.5, 1.5 / 1
        self.assertIn("| forwarding's part: dlockd's ratio / the ceiling's | 0.80 | 1.33 | 1.50 |",
                      t)

    def test_data_dir_and_redis_store(self):
        rs = summarize([run(50, p99=300, cpu_us=9.0, companion_cpu_us=4.0)])
        sums = {"dlockd": summary(100, 100, 4.0), "dlockd-datadir": summary(90, 110, 5.0),
                "dlockd-redis": rs, "redis": summary(200, 50, 3.0)}
        t = side_by_side_table("x", sums, ["dlockd", "dlockd-datadir", "dlockd-redis", "redis"])
        self.assertIn("| dlockd-datadir / dlockd | 0.90 | 1.25 | 1.10 |", t)
        self.assertIn("| dlockd-redis / dlockd | 0.50 | 2.25 | 3.00 |", t)
        self.assertIn("| dlockd-redis / redis | 0.25 | 3.00 | 6.00 |", t)
        self.assertIn("of it, its redis-server: 4.00 µs/req (median)", t)

    def test_coarse_cpu_time_is_flagged(self):
        sums = {"dlockd": summary(100, 100, 4.0, ticks=99), "redis": summary(100, 100, 4.0)}
        t = side_by_side_table("x", sums, ["dlockd", "redis"])
        self.assertIn(f"CPU time of dlockd was under {config.MIN_CPU_TICKS} clock ticks", t)


class OpenLoopTable(unittest.TestCase):
    def table(self, dlockd_p99, redis_rps_min=10_000):
        args = parse_args(["--open-loop"])
        sums = {"dlockd": summary(10_000, dlockd_p99, 3.0),
                "redis": summarize([run(redis_rps_min, p99=100, cpu_us=3.0)])}
        return open_loop_table("colo", args, [run(20_000), run(20_000)], 10_000, sums,
                               ["dlockd", "redis"])

    def test_target_met(self):
        t = self.table(dlockd_p99=50)
        self.assertIn("redis-server's p99: 0.50 (met).", t)
        self.assertIn("| dlockd / redis | 0.50 | 0.50 | 0.50 |", t)
        self.assertNotIn("did not keep up", t)

    def test_target_not_met_and_a_server_behind(self):
        t = self.table(dlockd_p99=51, redis_rps_min=9_700)
        self.assertIn("redis-server's p99: 0.51 (not met).", t)
        self.assertIn("redis answered fewer than 98 % of the offered requests", t)


class Sections(unittest.TestCase):
    def section(self, argv, tables=("### t\n\n| a |",), head=None):
        args = parse_args(argv)
        return section_text("side by side", args, list(tables), {}, head,
                            now="2026-01-02 03:04 UTC", commit="abc1234",
                            command="perf/compare " + " ".join(argv))

    def test_head_and_tables(self):
        s = self.section(["--servers", "dlockd,dlockd-2w"])
        lines = s.splitlines()
        self.assertEqual(lines[0], "## 2026-01-02 03:04 UTC · abc1234 · side by side")
        self.assertIn("- command: `perf/compare --servers dlockd,dlockd-2w`", lines)
        self.assertIn("- commit: abc1234", lines)
        self.assertIn("- runs: 3 round(s) of 10 s per server, alternating, each after a "
                      "separate 1 s warm-up; medians over the rounds", lines)
        self.assertTrue(any("dlockd with 2 workers shares the 2 vCPUs" in x for x in lines))
        self.assertFalse(any(x.startswith("- dlockd-redis:") for x in lines))
        self.assertIn("### t\n\n| a |\n", s)
        self.assertNotIn("QUICK", s)

    def test_quick_runs_say_so(self):
        s = self.section(["--quick"])
        self.assertTrue(s.startswith("## 2026-01-02 03:04 UTC · abc1234 · side by side · "
                                     "QUICK SMOKE RUN (not a measurement)\n"))
        self.assertIn("too short and too few rounds", s)
        s = self.section(["--quick", "--instructions"])
        self.assertIn("too few requests for the start-up costs to wash out", s)

    def test_a_modes_own_head(self):
        s = self.section(["--memory"], head=["- mine"])
        self.assertIn("\n- mine\n", s)
        self.assertNotIn("- runs:", s)

    def test_appended(self):
        self.assertEqual(appended("# r\n\nold", "## new"), "# r\n\nold\n\n## new")
        self.assertEqual(appended("# r\n\nold\n", "## new"), "# r\n\nold\n\n## new")
        fresh = appended(None, "## new")
        self.assertTrue(fresh.startswith("# perf/compare results\n\n"))
        self.assertTrue(fresh.endswith("\n\n## new"))

    def test_write_results_appends_or_not(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "RESULTS.md"
            path.write_text("# r\n")
            args = parse_args(["--quick", "--no-record"])
            _, out, err = quiet(write_results, "side by side", args, ["### t"], {},
                                results=path)
            self.assertEqual(path.read_text(), "# r\n")
            self.assertIn("### t", out)
            self.assertIn("not appended", err)
            args = parse_args(["--quick"])
            _, out, _ = quiet(write_results, "side by side", args, ["### t"], {}, results=path)
            # print() adds a newline to the section
            self.assertEqual(path.read_text(), "# r\n\n" + out[:-1])


class CommandLine(unittest.TestCase):
    def test_defaults(self):
        a = parse_args([])
        self.assertEqual((a.rounds, a.duration, a.warmup, a.connections),
                         (config.DEFAULT_ROUNDS, config.DEFAULT_DURATION_S,
                          config.DEFAULT_WARMUP_S, config.DEFAULT_CONNECTIONS))
        self.assertEqual(a.depths, [1, 16])
        self.assertEqual(a.placements, ["colo", "split"])
        self.assertEqual(a.servers, config.DEFAULT_SERVERS)
        self.assertEqual(a.requests, config.DEFAULT_INSTR_REQUESTS)
        self.assertFalse(a.no_record)

    def test_quick_and_mode_defaults(self):
        a = parse_args(["--quick"])
        self.assertEqual((a.rounds, a.duration, a.requests),
                         (1, config.QUICK_DURATION_S, config.QUICK_INSTR_REQUESTS))
        self.assertEqual(a.leases, config.QUICK_MEMORY_LEASES)
        a = parse_args(["--expiry-storm"])
        self.assertEqual(a.placements, ["colo"])
        self.assertEqual(a.duration, config.DEFAULT_STORM_DURATION_S)
        a = parse_args(["--memory", "--leases", "10,20", "--servers", "dlockd"])
        self.assertEqual(a.leases, [10, 20])
        a = parse_args(["--depths", "4", "--placements", "split", "--servers", "redis,dlockd"])
        self.assertEqual((a.depths, a.placements, a.servers),
                         ([4], ["split"], ["redis", "dlockd"]))

    def test_refusals(self):
        self.assertIn("at most one of", usage_error(["--memory", "--instructions"]))
        self.assertIn("does not combine with --open-loop", usage_error(["--all", "--open-loop"]))
        self.assertIn("unknown server 'foo'", usage_error(["--servers", "dlockd,foo"]))
        self.assertIn("unknown placement", usage_error(["--placements", "far"]))
        self.assertIn("--depths", usage_error(["--depths", "0"]))
        self.assertIn("--depths: expected numbers", usage_error(["--depths", "a"]))
        self.assertIn("shorter than --duration",
                      usage_error(["--expiry-storm", "--storm-expiry", "20"]))
        self.assertIn("needs redis", usage_error(["--open-loop", "--servers", "dlockd"]))
        self.assertIn("--servers names neither", usage_error(["--memory", "--servers", "nginx"]))


class ServerCommandLines(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.workdir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_dlockd_and_two_workers(self):
        argv, cpus = server_argv("dlockd", BINS, 4000, self.workdir)
        self.assertEqual(argv, ["/b/dlockd", "--listen", "127.0.0.1:4000", "--workers", "1",
                                "--metrics-listen", "127.0.0.1:0",
                                "--grpc-listen", "127.0.0.1:0"])
        self.assertEqual(cpus, config.SERVER_CPU)
        argv, cpus = server_argv("dlockd-2w", BINS, 4000, self.workdir, io_driver="legacy")
        self.assertEqual(argv[3:5], ["--workers", "2"])
        self.assertEqual(argv[-2:], ["--io-driver", "legacy"])
        self.assertEqual(cpus, config.TWO_WORKER_CPUS)

    def test_every_dlockd_on_ephemeral_ports(self):
        # Fixed ports (metrics 9090, gRPC 50001) may be held by other processes.
        for name in ("dlockd", "dlockd-nometrics", "dlockd-datadir", "dlockd-redis",
                     "dlockd-2w"):
            argv, _ = server_argv(name, BINS, 4000, self.workdir, store_port=4001)
            self.assertEqual(argv[argv.index("--grpc-listen") + 1], "127.0.0.1:0", name)
            metrics = argv[argv.index("--metrics-listen") + 1]
            self.assertIn(metrics, ("127.0.0.1:0", "off"), name)

    def test_valgrind_prefix_and_no_metrics(self):
        argv, _ = server_argv("dlockd-nometrics", BINS, 4000, self.workdir,
                              valgrind=["valgrind", "--tool=callgrind"])
        self.assertEqual(argv[:3], ["valgrind", "--tool=callgrind", "/b/dlockd"])
        self.assertIn("off", argv)

    def test_every_data_dir_start_is_fresh(self):
        a, _ = server_argv("dlockd-datadir", BINS, 4000, self.workdir)
        b, _ = server_argv("dlockd-datadir", BINS, 4000, self.workdir)
        da, db = a[a.index("--data-dir") + 1], b[b.index("--data-dir") + 1]
        self.assertNotEqual(da, db)
        self.assertEqual(os.listdir(da), [])
        self.assertTrue(da.startswith(self.workdir))

    def test_redis_store_component(self):
        argv, _ = server_argv("dlockd-redis", BINS, 4000, self.workdir, store_port=4001)
        cdir = Path(argv[argv.index("--resources-path") + 1])
        text = (cdir / f"{config.PROBE_STORE}.yaml").read_text()
        self.assertIn("type: lock.redis", text)
        self.assertIn("value: 127.0.0.1:4001", text)
        self.assertIn("--app-id=", argv)

    def test_ceiling_and_anchors(self):
        argv, cpus = server_argv("ceiling-2w", BINS, 4000, self.workdir)
        self.assertEqual(argv[0], "/b/dlockd-ceiling")
        self.assertEqual(cpus, config.TWO_WORKER_CPUS)
        argv, _ = server_argv("redis", BINS, 4000, self.workdir)
        self.assertEqual(argv[argv.index("--port") + 1], "4000")
        argv, _ = server_argv("nginx", BINS, 4000, self.workdir)
        conf = Path(argv[argv.index("-c") + 1]).read_text()
        self.assertIn("listen 127.0.0.1:4000;", conf)
        self.assertIn("keepalive_requests 1000000000;", conf)


class ClientCommandLines(unittest.TestCase):
    def test_duration_run(self):
        argv = loadgen_argv(BINS, 4000, "http", "uncontended", 64, 16, "0", ("duration", 2.5),
                            True)
        self.assertEqual(argv[:4], ["taskset", "-c", "0", "/b/dlockd-loadgen"])
        self.assertEqual(argv[argv.index("--duration") + 1], "2500ms")
        self.assertEqual(argv[-2:], ["--check", "--json"])
        self.assertNotIn("--requests", argv)
        self.assertNotIn("--pacer", argv)

    def test_counted_open_loop_run(self):
        argv = loadgen_argv(BINS, 4000, "resp", "churn", 8, 1, "1", ("requests", 500), False,
                            rate=1000, resources=500, expiry=5, pacer="spin")
        for flag, value in (("--requests", "500"), ("--rate", "1000"), ("--resources", "500"),
                            ("--expiry", "5"), ("--pacer", "spin"), ("--protocol", "resp")):
            self.assertEqual(argv[argv.index(flag) + 1], value)
        self.assertNotIn("--check", argv)

    def test_fill(self):
        self.assertEqual(fill_connections(1_000_000), 16)
        self.assertEqual(fill_connections(7), 7)
        self.assertEqual(fill_connections(17), 1)
        argv = fill_argv(BINS, 4000, "http", 1_000_000, 3600)
        self.assertEqual(argv[argv.index("--connections") + 1], "16")
        self.assertEqual(argv[argv.index("--resources") + 1], "1000000")
        self.assertEqual(dlockd_lease_flags(config.DLOCKD_DEFAULT_MAX_LEASES // 2), [])
        self.assertEqual(dlockd_lease_flags(6_000_000), ["--max-leases", "12000000"])

    def test_server_driver(self):
        line = ("dlockd 0.1.0 listening on 127.0.0.1:3500 with 1 worker, io_uring driver, "
                "stores: lockstore (in memory)")
        self.assertEqual(server_driver(line), "io_uring")
        line = ("dlockd 0.1.0 listening on 127.0.0.1:3500 with 1 worker, legacy (epoll) driver "
                "(io_uring unavailable: EPERM), stores: lockstore")
        self.assertEqual(server_driver(line), "legacy (epoll) (io_uring unavailable: EPERM)")
        self.assertIsNone(server_driver(""))


class Callgrind(unittest.TestCase):
    def test_total_of_a_new_dump(self):
        with tempfile.TemporaryDirectory() as d:
            prefix = str(Path(d) / "callgrind.out")
            Path(prefix + ".1").write_text("events: Ir\nsummary: 5\ntotals: 5\n")
            before = {prefix + ".1"}
            Path(prefix + ".2").write_text("events: Ir\nsummary: 123456\n")
            total, path = callgrind_total(prefix, before)
            self.assertEqual((total, path), (123456, prefix + ".2"))
            Path(prefix + ".3").write_text("events: Ir\nsummary: 1\ntotals: 777\n")
            total, _ = callgrind_total(prefix, before | {prefix + ".2"})
            self.assertEqual(total, 777)


class Baseline(unittest.TestCase):
    """--baseline REV: dlockd built from REV, run as dlockd-base beside dlockd."""

    def test_servers_follow_their_counterparts(self):
        a = parse_args(["--baseline", "HEAD", "--servers", "redis,dlockd-2w,ceiling,dlockd"])
        self.assertEqual(a.servers, ["redis", "dlockd-2w", "dlockd-base-2w", "ceiling", "dlockd",
                                     "dlockd-base"])
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        self.assertEqual(a.baseline_commit, head)
        self.assertTrue(head.startswith(a.baseline_short))
        a = parse_args(["--instructions", "--baseline", "HEAD", "--servers", "dlockd,ceiling"])
        self.assertEqual(a.servers, ["dlockd", "dlockd-base", "ceiling"])
        # The side-by-side order puts each right after its counterpart too.
        for servers in config.WORKLOAD_SERVERS.values():
            for b, of in config.BASE_SERVERS.items():
                self.assertEqual(servers.index(b), servers.index(of) + 1)
        self.assertIsNone(parse_args([]).baseline_commit)

    def test_refusals(self):
        self.assertIn("names no commit",
                      usage_error(["--baseline", "no-such-revision-anywhere"]))
        self.assertIn("does not combine with --memory",
                      usage_error(["--memory", "--baseline", "HEAD"]))
        self.assertIn("does not combine with --open-loop",
                      usage_error(["--open-loop", "--baseline", "HEAD"]))
        self.assertIn("--servers names neither",
                      usage_error(["--baseline", "HEAD", "--servers", "ceiling,redis"]))
        self.assertIn("--servers names no dlockd",
                      usage_error(["--instructions", "--baseline", "HEAD", "--servers",
                                   "dlockd-2w"]))

    def test_run_exactly_as_dlockd(self):
        bins = dict(BINS, **{"dlockd-base": "/base/dlockd"})
        with tempfile.TemporaryDirectory() as d:
            for b, of in config.BASE_SERVERS.items():
                kw = {"valgrind": ["valgrind"], "io_driver": "legacy",
                      "dlockd_flags": ["--max-leases", "9"]}
                theirs, their_cpus = server_argv(of, bins, 4000, d, **kw)
                mine, my_cpus = server_argv(b, bins, 4000, d, **kw)
                self.assertEqual(mine, [("/base/dlockd" if x == "/b/dlockd" else x)
                                        for x in theirs])
                self.assertIn("/base/dlockd", mine)
                self.assertEqual(my_cpus, their_cpus)
            with self.assertRaises(Fail):
                server_argv("dlockd-base", BINS, 4000, d)

    def test_side_by_side_ratios(self):
        sums = {"dlockd": summary(110, 90, 4.0), "dlockd-base": summary(100, 100, 5.0),
                "dlockd-2w": summary(80, 150, 8.0), "dlockd-base-2w": summary(40, 300, 8.0),
                "ceiling": summary(200, 100, 2.0), "ceiling-2w": summary(200, 100, 3.0)}
        t = side_by_side_table("x", sums, list(sums))
        self.assertIn("| dlockd-base (the baseline), 1 worker | 100 |", t)
        self.assertIn("| this commit / the baseline | req/s | server CPU per request | p99 |", t)
        self.assertIn("| dlockd / dlockd-base | 1.10 | 0.80 | 0.90 |", t)
        self.assertIn("| dlockd-2w / dlockd-base-2w | 2.00 | 1.00 | 0.50 |", t)
        # The cross-shard table keeps its rows in their places; the baseline's comes last.
        cross = t[t.index("| cross-shard |"):].splitlines()
        self.assertTrue(cross[2].startswith("| dlockd 2 workers / 1 worker |"))
        self.assertTrue(cross[4].startswith("| forwarding's part:"))
        self.assertEqual(cross[5], "| dlockd-base 2 workers / 1 worker | 0.40 | 1.60 | 3.00 |")
        self.assertNotIn("| dlockd / dlockd-base", side_by_side_table(
            "x", {"dlockd": sums["dlockd"]}, ["dlockd"]))

    def test_instruction_tables(self):
        args = parse_args(["--instructions", "--baseline", "HEAD", "--depths", "1,16"])
        per = {("dlockd", 1): 12_000, ("dlockd", 16): 6_000,
               ("dlockd-base", 1): 15_000, ("dlockd-base", 16): 5_000,
               ("ceiling", 1): 6_000, ("ceiling", 16): 3_000}
        t = instructions_table(args, per, ["dlockd", "dlockd-base", "ceiling"])
        self.assertIn("| dlockd-base (the baseline), 1 worker | 15,000 | 5,000 |", t)
        self.assertIn("| ratio dlockd / dlockd-base | 0.80 | 1.20 |", t)
        self.assertIn("| ratio dlockd / ceiling | 2.00 | 2.00 |", t)
        self.assertIn("| difference, dlockd − dlockd-base (instructions per request) | "
                      "-3,000 | +1,000 |", t)
        per.update({("dlockd-2w", 1): 24_000, ("dlockd-2w", 16): 9_000,
                    ("dlockd-base-2w", 1): 30_000, ("dlockd-base-2w", 16): 9_000})
        names = ["dlockd", "dlockd-2w", "dlockd-base", "dlockd-base-2w"]
        t = cross_shard_table(args, per, names)
        self.assertIn("| ratio 2 workers / 1 worker | 2.00 | 1.50 |", t)
        self.assertIn("| ratio 2 workers / 1 worker, dlockd-base | 2.00 | 1.80 |", t)
        self.assertIn("| ratio dlockd-2w / dlockd-base-2w | 0.80 | 1.00 |", t)
        self.assertNotIn("dlockd-base", cross_shard_table(args, per, names[:2]))

    def test_the_section_names_the_baseline(self):
        argv = ["--quick", "--baseline", "HEAD", "--servers", "dlockd,dlockd-2w"]
        args = parse_args(argv)
        s = section_text("side by side", args, ["### t"], {}, now="now", commit="abc1234",
                         command="perf/compare " + " ".join(argv))
        self.assertTrue(s.startswith(f"## now · abc1234 · side by side · baseline "
                                     f"{args.baseline_short} · QUICK SMOKE RUN"))
        line = next(x for x in s.splitlines() if x.startswith("- baseline: "))
        self.assertIn(args.baseline_commit, line)
        self.assertIn(f'"{args.baseline_subject}"', line)
        self.assertIn("`--baseline HEAD`", line)
        self.assertIn("dlockd-base as dlockd, dlockd-base-2w as dlockd-2w", line)
        plain = section_text("side by side", parse_args([]), [], {}, now="now", commit="c",
                             command="perf/compare")
        self.assertNotIn("baseline", plain)

    def git_worktrees(self):
        return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=config.ROOT,
                              stdout=subprocess.PIPE, text=True, check=True).stdout

    def test_built_in_a_worktree_of_the_commit_that_is_removed_after(self):
        full, short, _ = baseline.resolve("HEAD")
        seen = {}

        def fake_build(extra, wanted, cwd, env, note):
            seen["head"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd,
                                          stdout=subprocess.PIPE, text=True,
                                          check=True).stdout.strip()
            seen["cargo.toml"] = (Path(cwd) / "Cargo.toml").exists()
            seen["listed"] = str(cwd) in self.git_worktrees()
            seen["args"] = (extra, wanted, env["CARGO_TARGET_DIR"])
            return {"dlockd": str(Path(env["CARGO_TARGET_DIR"]) / "release" / "dlockd")}

        with tempfile.TemporaryDirectory() as d, \
                mock.patch.object(baseline, "cargo_build", fake_build):
            path, _, _ = quiet(baseline.build_baseline, full, short, d)
            self.assertEqual(seen["head"], full)
            self.assertTrue(seen["cargo.toml"])
            self.assertTrue(seen["listed"])
            target = str(Path(d) / "baseline-target")
            self.assertEqual(seen["args"], (["--bin", "dlockd"], ["dlockd"], target))
            self.assertEqual(path, target + "/release/dlockd")
            src = Path(d) / "baseline-src"
            self.assertFalse(src.exists())
            self.assertNotIn(str(src), self.git_worktrees())

    def test_the_worktree_is_removed_when_the_build_fails(self):
        full, short, _ = baseline.resolve("HEAD")

        def failing_build(*_a, **_kw):
            raise Fail("cargo failed")

        with tempfile.TemporaryDirectory() as d, \
                mock.patch.object(baseline, "cargo_build", failing_build):
            with self.assertRaises(Fail):
                quiet(baseline.build_baseline, full, short, d)
            src = Path(d) / "baseline-src"
            self.assertFalse(src.exists())
            self.assertNotIn(str(src), self.git_worktrees())


def handoff_result(grants_per_s=20_000.0, p99=70.0, fairness=1.0, grants=200_000,
                   self_grants=0, per=(25_000,) * 8, cpu_share=0.45, client_ns=8_000):
    """One client result of a handoff or poll run, as handoff_one returns it."""
    return {
        "rps": grants_per_s * 2, "requests": grants * 2, "client_cpu_ns_per_req": client_ns,
        "server_cpu_share": cpu_share, "server_cpu_ticks": 450,
        "handoff": {
            "grants": grants, "grants_per_s": grants_per_s, "grants_per_connection": list(per),
            "fairness": fairness, "handoffs": grants, "handoff_p50_us": p99 / 2,
            "handoff_p99_us": p99, "handoff_p999_us": p99 * 2, "handoff_max_us": p99 * 10,
            "wait_p50_us": 200.0, "wait_p99_us": 400.0, "wait_max_us": 900.0,
            "pass_wait_p50_us": 200.0, "pass_wait_p99_us": 400.0, "pass_wait_max_us": 900.0,
            "self_grants": self_grants, "unpaired": 1, "denied": 0,
        },
    }


class Handoff(unittest.TestCase):
    """--handoff: acquire against polling, and the one-connection rate."""

    def test_command_line(self):
        a = parse_args(["--handoff"])
        self.assertTrue(a.handoff)
        self.assertEqual((a.clients, a.rounds, a.duration, a.placements),
                         (config.DEFAULT_HANDOFF_CLIENTS, 3, 10.0, ["colo", "split"]))
        a = parse_args(["--handoff", "--clients", "4", "--quick"])
        self.assertEqual((a.clients, a.rounds, a.duration), (4, 1, config.QUICK_DURATION_S))
        self.assertIn("at most one of", usage_error(["--handoff", "--memory"]))
        self.assertIn("--clients must be at least 2", usage_error(["--handoff", "--clients",
                                                                   "1"]))
        self.assertIn("must name it", usage_error(["--handoff", "--servers", "redis"]))
        self.assertIn("does not combine with --handoff",
                      usage_error(["--handoff", "--baseline", "HEAD"]))

    def test_runs_follow_the_servers(self):
        keys = [r[0] for r in handoff_runs(config.ALL_SERVERS)]
        self.assertEqual(keys, ["acquire", "poll-dlockd", "poll-redis", "greedy-dlockd",
                                "greedy-redis", "one-connection"])
        keys = [r[0] for r in handoff_runs(["dlockd"])]
        self.assertEqual(keys, ["acquire", "poll-dlockd", "greedy-dlockd", "one-connection"])

    def test_client_command_lines(self):
        runs = {r[0]: r[:4] for r in config.HANDOFF_RUNS}

        def value(argv, flag):
            return argv[argv.index(flag) + 1]

        argv = handoff_argv(BINS, 4000, runs["acquire"], 8, "0", 10.0, 2)
        self.assertEqual((value(argv, "--workload"), value(argv, "--protocol")),
                         ("handoff", "http"))
        self.assertEqual((value(argv, "--connections"), value(argv, "--depth")), ("8", "1"))
        self.assertEqual(value(argv, "--wait-ms"), str(config.HANDOFF_WAIT_MS))
        self.assertEqual(value(argv, "--seed"), "2")
        self.assertNotIn("--backoff", argv)
        self.assertEqual(argv[-1], "--json")
        argv = handoff_argv(BINS, 4000, runs["greedy-redis"], 8, "1", 10.0, 1)
        self.assertEqual((value(argv, "--workload"), value(argv, "--protocol")), ("poll", "resp"))
        self.assertEqual(value(argv, "--backoff"), "50-500")
        self.assertIn("--greedy", argv)
        self.assertEqual(argv[:3], ["taskset", "-c", "1"])
        argv = handoff_argv(BINS, 4000, runs["poll-dlockd"], 8, "0", 10.0, 1)
        self.assertNotIn("--greedy", argv)
        argv = handoff_argv(BINS, 4000, runs["one-connection"], 8, "0", 10.0, 1)
        self.assertEqual((value(argv, "--workload"), value(argv, "--connections")),
                         ("uncontended", "1"))
        self.assertNotIn("--seed", argv)

    def test_summaries(self):
        s = summarize_handoff([handoff_result(p99=60), handoff_result(p99=80, fairness=None),
                               handoff_result(p99=70, grants_per_s=10_000.0, self_grants=50)])
        self.assertEqual((s["p99"], s["p99_min"], s["p99_max"]), (70, 60, 80))
        self.assertEqual((s["grants_per_s"], s["grants_per_s_min"]), (20_000.0, 10_000.0))
        self.assertEqual(s["fairness"], 1.0)
        self.assertEqual(fmt_fairness(s["fairness_worst"]), "∞")
        self.assertAlmostEqual(s["self_share"], 0.0)
        self.assertEqual(len(s["per_client"]), 3)
        one = summarize_one_connection([{"rps": 40_000.0, "server_cpu_share": 0.5,
                                         "client_cpu_ns_per_req": 10_000}])
        self.assertEqual(one["pairs_per_s"], 20_000.0)
        self.assertEqual(one["client_cpu"], 10.0)

    def test_targets(self):
        acq = summarize_handoff([handoff_result(p99=80, grants_per_s=27_000.0)])
        poll = summarize_handoff([handoff_result(p99=130_000, grants_per_s=25.0, fairness=1.6)])
        one = summarize_one_connection([{"rps": 50_000.0, "server_cpu_share": 0.5,
                                         "client_cpu_ns_per_req": 10_000}])
        rows = targets_rows({"acquire": acq, "poll-dlockd": poll}, one)
        self.assertEqual([r[3] for r in rows], ["met", "met", "met", "met"])
        self.assertEqual(rows[1][2], "1,625")
        self.assertEqual(rows[2][2], "1.08")
        slow = summarize_handoff([handoff_result(p99=300, grants_per_s=23_000.0,
                                                 fairness=1.3)])
        rows = targets_rows({"acquire": slow, "poll-redis": poll}, one)
        self.assertEqual([r[3] for r in rows], ["not met", "not met", "met", "not met"])
        self.assertIn("redis-server", rows[1][0])
        self.assertEqual(targets_rows({"poll-dlockd": poll}, one), [])
        self.assertEqual((fmt_times(0.934), fmt_times(12.41), fmt_times(None)),
                         ("0.93", "12.4", "–"))

    def test_table(self):
        summary = {"acquire": summarize_handoff([handoff_result()]),
                   "greedy-dlockd": summarize_handoff([handoff_result(
                       fairness=None, self_grants=199_000, per=(0, 200_000))])}
        one = summarize_one_connection([{"rps": 40_000.0, "server_cpu_share": 0.5,
                                         "client_cpu_ns_per_req": 10_000}])
        args = parse_args(["--handoff"])
        labels = [(r[0], r[4]) for r in config.HANDOFF_RUNS if r[0] != "one-connection"]
        t = handoff_table("colo", args, summary, one, labels)
        lines = t.splitlines()
        self.assertEqual(lines[0], "### handoff, colo: 8 clients on one resource, 10 s per run")
        row = next(x for x in lines if x.startswith("| dlockd, acquire |"))
        self.assertIn("| 20.0 k |", row)
        self.assertIn("| 1.000, 1.000 |", row)
        greedy = next(x for x in lines if x.startswith("| dlockd, greedy polling"))
        self.assertIn("| 99.5% |", greedy)
        self.assertIn("| ∞, ∞ |", greedy)
        self.assertTrue(any(x.startswith("| dlockd, 1 connection, uncontended lock+unlock "
                                         "(pairs/s) | 20.0 k |") for x in lines))
        self.assertIn("| grants/s, dlockd acquire / uncontended lock+unlock pairs/s of one "
                      "connection | ≥ 0.9 × | 1.00 | met |", t)
        self.assertIn("- dlockd, greedy polling (no backoff after an unlock): 0 200000", t)
        self.assertFalse(any(x.startswith("| redis-server") for x in lines))


def parked_round(idle=(0, 100, 16_000, 10.0), conns=(1, 100, 28_000, 10.5),
                 parked=(1, 101, 29_000, 10.2)):
    """One round of --parked-waiters: (ticks, wake-ups, RssAnon kB, CPU ms) per window."""
    def w(t):
        return {"ticks": t[0], "wakeups": t[1], "rss_anon": t[2], "ns": int(t[3] * 1e6)}
    return {"idle": w(idle), "connections": w(conns), "parked": w(parked)}


class ParkedWaiters(unittest.TestCase):
    def test_command_line(self):
        a = parse_args(["--parked-waiters"])
        self.assertEqual((a.waiters, a.duration, a.rounds),
                         (config.DEFAULT_PARKED_WAITERS, 10.0, 3))
        self.assertEqual(parse_args(["--parked-waiters", "--quick"]).waiters,
                         config.QUICK_PARKED_WAITERS)
        self.assertIn("at most 45 s", usage_error(["--parked-waiters", "--duration", "50"]))
        self.assertIn("--waiters at least 1", usage_error(["--parked-waiters", "--waiters",
                                                           "0"]))
        self.assertIn("at most one of", usage_error(["--parked-waiters", "--handoff"]))

    def test_server_flags(self):
        self.assertEqual(parked_flags(10_000), ["--max-connections", "10100"])
        self.assertEqual(parked_flags(200_000), ["--max-connections", "200100",
                                                 "--max-waiters", "200100"])
        argv, _ = server_argv("dlockd", BINS, 4000, "/tmp", dlockd_flags=parked_flags(10))
        self.assertEqual(argv[-2:], ["--max-connections", "110"])

    def test_summary_and_bytes(self):
        s = parked_summary([parked_round(), parked_round(parked=(0, 99, 28_500, 9.0))], 1_000)
        # (28000 − 16000) kB over 1000 connections; the waiters' median of 1024 and 512 bytes.
        self.assertAlmostEqual(s["bytes_per_connection"], 12_288)
        self.assertAlmostEqual(s["bytes_per_waiter"], 768)
        self.assertEqual((s["bytes_per_waiter_min"], s["bytes_per_waiter_max"]), (512, 1024))
        self.assertAlmostEqual(s["parked_cpu_ms"], 9.6)
        self.assertAlmostEqual(s["parked_cpu_ms_max"], 10.2)
        tick = 1000 / os.sysconf("SC_CLK_TCK")
        self.assertAlmostEqual(s["parked_tick_ms"], tick / 2)

    def test_table_verdicts(self):
        args = parse_args(["--parked-waiters", "--waiters", "1000"])
        t = parked_table(args, [parked_round(parked=(1, 100, 28_500, 10.9))])
        self.assertIn("### 1,000 parked acquires, 10 s windows, dlockd 1 worker", t)
        self.assertIn("\n| 1 | 10.00 / 100 | 10.50 / 100 | 10.90 / 100 | 12288 | 512 |", t)
        verdicts = [x.rsplit("|", 2)[-2].strip() for x in t.splitlines()
                    if x.startswith("| server CPU over") or x.startswith("| memory per")]
        self.assertEqual(verdicts, ["met", "met"])
        t = parked_table(args, [parked_round(parked=(5, 400, 30_000, 11.5))])
        verdicts = [x.rsplit("|", 2)[-2].strip() for x in t.splitlines()
                    if x.startswith("| server CPU over") or x.startswith("| memory per")]
        self.assertEqual(verdicts, ["not met", "not met"])


class ExtraClientFlags(unittest.TestCase):
    def test_extra_flags_come_before_check_and_json(self):
        argv = loadgen_argv(BINS, 4000, "http", "poll", 8, 1, "0", ("duration", 1.0), True,
                            extra=["--greedy"])
        self.assertEqual(argv[-3:], ["--greedy", "--check", "--json"])


if __name__ == "__main__":
    unittest.main()


class UnixSocketServers(unittest.TestCase):
    """dlockd-uds and redis-uds: their command lines, their client, their tables."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.workdir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_in_the_default_run_and_in_servers(self):
        a = parse_args([])
        self.assertIn("dlockd-uds", a.servers)
        self.assertIn("redis-uds", a.servers)
        a = parse_args(["--servers", "dlockd,dlockd-uds,redis,redis-uds"])
        self.assertEqual(a.servers, ["dlockd", "dlockd-uds", "redis", "redis-uds"])
        # Each alternates right after its TCP twin in the side-by-side tables.
        order = config.WORKLOAD_SERVERS["uncontended"]
        self.assertLess(order.index("dlockd"), order.index("dlockd-uds"))
        self.assertLess(order.index("redis"), order.index("redis-uds"))
        self.assertIn("dlockd-uds", config.DLOCKD_SERVERS)  # probed, warmed up with --check

    def test_dlockd_uds_is_dlockd_on_a_socket(self):
        tcp, tcp_cpus = server_argv("dlockd", BINS, 4000, self.workdir, io_driver="legacy")
        uds, uds_cpus = server_argv("dlockd-uds", BINS, 4000, self.workdir,
                                    io_driver="legacy")
        self.assertEqual(uds_cpus, tcp_cpus)
        udir = uds[uds.index("-u") + 1]
        self.assertTrue(udir.startswith(self.workdir))
        self.assertEqual(os.listdir(udir), [])
        self.assertEqual(uds[uds.index("--app-id") + 1], "perf")
        # -u replaces --listen and --grpc-listen (gRPC on its socket); the rest is dlockd's.
        self.assertNotIn("--listen", uds)
        self.assertNotIn("--grpc-listen", uds)
        rest = [x for x in tcp if x not in ("--listen", "127.0.0.1:4000", "--grpc-listen")]
        rest.remove("127.0.0.1:0")  # the gRPC listener's; the admin port's stays
        self.assertEqual([x for x in uds if x not in ("-u", udir, "--app-id", "perf")], rest)
        self.assertIn("--metrics-listen", uds)
        # A fresh directory at every start.
        again, _ = server_argv("dlockd-uds", BINS, 4000, self.workdir)
        self.assertNotEqual(again[again.index("-u") + 1], udir)
        server = Server("dlockd-uds", uds, 4000, self.workdir, 1.0, "0")
        self.assertEqual(server.unix, f"{udir}/dapr-perf-http.socket")
        self.assertEqual(server.target, f"unix:{udir}/dapr-perf-http.socket")
        self.assertEqual(server.host, "localhost")
        self.assertTrue(server.says_driver)
        self.assertEqual(protocol_of("dlockd-uds"), "http")

    def test_redis_uds_has_no_tcp(self):
        tcp, _ = server_argv("redis", BINS, 4000, self.workdir)
        uds, _ = server_argv("redis-uds", BINS, 4001, self.workdir)
        self.assertEqual(uds[uds.index("--port") + 1], "0")
        self.assertNotIn("--bind", uds)
        path = uds[uds.index("--unixsocket") + 1]
        self.assertTrue(path.startswith(self.workdir) and path.endswith("/redis.sock"))
        self.assertEqual(uds[uds.index("--unixsocketperm") + 1], "700")
        # The redis anchor's persistence-off settings, the same.
        for flag in ("--save", "--appendonly", "--daemonize", "--logfile"):
            self.assertEqual(uds[uds.index(flag) + 1], tcp[tcp.index(flag) + 1], flag)
        server = Server("redis-uds", uds, 4001, self.workdir, 1.0, "0")
        self.assertEqual(server.target, f"unix:{path}")
        self.assertEqual(protocol_of("redis-uds"), "resp")
        tcp_server = Server("redis", tcp, 4000, self.workdir, 1.0, "0")
        self.assertIsNone(tcp_server.unix)
        self.assertEqual(tcp_server.target, "127.0.0.1:4000")

    def test_a_socket_path_too_long_is_refused(self):
        deep = Path(self.workdir) / ("d" * 100)
        deep.mkdir()
        with self.assertRaises(Fail) as e:
            server_argv("redis-uds", BINS, 4000, str(deep))
        self.assertIn("TMPDIR", str(e.exception))

    def test_ready_means_healthz_or_pong(self):
        def ready(name, answer):
            a, b = socket.socketpair()
            with a, b:
                b.sendall(answer)
                ok = answers_ready(name, a)
                return ok, b.recv(1024)

        ok, asked = ready("dlockd-uds", b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertTrue(ok)
        self.assertTrue(asked.startswith(b"GET /v1.0/healthz HTTP/1.1\r\n"))
        self.assertFalse(ready("dlockd-uds", b"HTTP/1.1 503 Service Unavailable\r\n\r\n")[0])
        ok, asked = ready("redis-uds", b"+PONG\r\n")
        self.assertTrue(ok)
        self.assertEqual(asked, b"PING\r\n")
        self.assertFalse(ready("redis-uds", b"-LOADING\r\n")[0])

    def test_client_targets_the_socket(self):
        argv = loadgen_argv(BINS, "unix:/t/dapr-perf-http.socket", "http", "uncontended", 64,
                            1, "0", ("duration", 2), False)
        self.assertEqual(argv[argv.index("--target") + 1], "unix:/t/dapr-perf-http.socket")
        argv = loadgen_argv(BINS, 4000, "resp", "uncontended", 64, 1, "0", ("duration", 2),
                            False)
        self.assertEqual(argv[argv.index("--target") + 1], "127.0.0.1:4000")
        self.assertEqual(client_target("PORT"), "127.0.0.1:PORT")
        self.assertEqual(client_target("10.0.0.1:3500"), "10.0.0.1:3500")

    def test_ratios_and_targets_in_colo_at_64_connections(self):
        sums = {"dlockd": summary(100_000, 1000, 4.0), "dlockd-uds": summary(160_000, 600, 3.0),
                "redis": summary(80_000, 1200, 5.0), "redis-uds": summary(100_000, 900, 4.0)}
        names = ["dlockd", "dlockd-uds", "redis", "redis-uds"]
        t = side_by_side_table("x", sums, names, placement="colo", depth=1, connections=64)
        self.assertIn("| dlockd, 1 worker, Unix socket (-u) | 160.0 k |", t)
        self.assertIn("| dlockd-uds / dlockd | 1.60 | 0.75 | 0.60 |", t)
        self.assertIn("| redis-uds / redis | 1.25 | 0.80 | 0.75 |", t)
        self.assertIn("| dlockd-uds / redis-uds | 1.60 | 0.75 | 0.67 |", t)
        self.assertIn("| req/s, dlockd-uds / dlockd (TCP), depth 1 | ≥ 1.5 × | 1.60 | met |", t)
        self.assertIn("| p99, dlockd-uds / dlockd (TCP), depth 1 | ≤ 0.7 × | 0.60 | met |", t)
        self.assertIn("| req/s, dlockd-uds / redis-uds, depth 1 | ≥ 1.5 × | 1.60 | met |", t)
        self.assertNotIn("1.2 ×", t)  # depth 16's target
        # Depth 16: its own target, not met here; the depth-1 ones are not repeated.
        t = side_by_side_table("x", sums, names, placement="colo", depth=16, connections=64)
        self.assertIn("| req/s, dlockd-uds / dlockd (TCP), depth 16 | ≥ 1.2 × | 1.60 | met |",
                      t)
        self.assertNotIn("p99, dlockd-uds", t)
        sums["dlockd-uds"] = summary(110_000, 800, 3.0)
        t = side_by_side_table("x", sums, names, placement="colo", depth=1, connections=64)
        self.assertIn("| req/s, dlockd-uds / dlockd (TCP), depth 1 | ≥ 1.5 × | 1.10 | not met |",
                      t)
        self.assertIn("| p99, dlockd-uds / dlockd (TCP), depth 1 | ≤ 0.7 × | 0.80 | not met |",
                      t)
        # The targets are stated for colo at 64 connections: none in split or at 32.
        for placement, conns in (("split", 64), ("colo", 32)):
            t = side_by_side_table("x", sums, names, placement=placement, depth=1,
                                   connections=conns)
            self.assertIn("| dlockd-uds / dlockd |", t)
            self.assertNotIn("| target |", t)
        # Without dlockd-uds there is no socket table at all.
        t = side_by_side_table("x", {"dlockd": sums["dlockd"]}, ["dlockd"], placement="colo",
                               depth=1, connections=64)
        self.assertNotIn("Unix socket", t)

    def test_the_section_says_how_they_ran(self):
        args = parse_args(["--servers", "dlockd,dlockd-uds,redis-uds"])
        s = section_text("side by side", args, [], {}, now="n", commit="c", command="x")
        self.assertIn("- dlockd-uds and redis-uds: on a Unix domain socket", s)
        self.assertIn("-u DIR --app-id perf", s)
        self.assertIn("--port 0 --unixsocket PATH --unixsocketperm 700", s)


class ExternalServers(unittest.TestCase):
    """--external NAME=ADDR[@PID] and --external-store NAME=STORE."""

    def test_parsed(self):
        me = os.getpid()
        a = parse_args(["--quick", "--servers", "dlockd",
                        "--external", f"daprd=127.0.0.1:3500@{me}",
                        "--external", "sidecar=unix:/tmp/dapr/dapr-app-http.socket",
                        "--external", f"two=[::1]:3501@{me},{me}",
                        "--external-store", "sidecar=redislock"])
        self.assertEqual([(e.name, e.target, e.pids, e.store) for e in a.externals], [
            ("daprd", "127.0.0.1:3500", [me], "lockstore"),
            ("sidecar", "unix:/tmp/dapr/dapr-app-http.socket", [], "redislock"),
            ("two", "[::1]:3501", [me, me], "lockstore"),
        ])
        self.assertEqual(a.servers, ["dlockd"])  # the externals are not compare's to start
        self.assertEqual(parse_args([]).externals, [])
        # A path with an '@' that is not followed by a PID is all address.
        self.assertEqual(parse_external("x=unix:/run/a@b.sock"), ("x", "unix:/run/a@b.sock", []))
        self.assertEqual(parse_external("x=unix:/run/a@b.sock@12"),
                         ("x", "unix:/run/a@b.sock", [12]))

    def test_refusals(self):
        me = os.getpid()
        for argv, words in (
                (["--external", "daprd"], "expected NAME=ADDR"),
                (["--external", "=127.0.0.1:1"], "is not a name"),
                (["--external", "a b=127.0.0.1:1"], "is not a name"),
                (["--external", "x=nohost"], "expected HOST:PORT or unix:PATH"),
                (["--external", "x=:3500"], "expected HOST:PORT or unix:PATH"),
                (["--external", "x=h:0"], "is not a port"),
                (["--external", "x=h:65536"], "is not a port"),
                (["--external", "x=unix:"], "needs a path"),
                (["--external", "x=unix:/" + "a" * 107], "at most 107 bytes"),
                (["--external", "x=h:1@"], "no PID after it"),
                (["--external", "x=h:1@2147483000"], "no process 2147483000 is running"),
                (["--external", "dlockd=h:1"], "the name of a server compare starts"),
                (["--external", "redis-uds=h:1"], "the name of a server compare starts"),
                (["--external", "dlockd-base=h:1"], "the name of a server compare starts"),
                (["--external", "x=h:1", "--external", f"x=h:2@{me}"], "given twice"),
                (["--external", "x=h:1", "--external-store", "y=s"], "no --external is named"),
                (["--external", "x=h:1", "--external-store", "x"], "expected NAME=STORE"),
                (["--external", "x=h:1", "--external-store", "x=a/b"], "not a store name"),
                (["--external", "x=h:1", "--external-store", "x="], "not a store name"),
                (["--external", "x=h:1", "--memory"], "does not combine with --memory"),
                (["--external", "x=h:1", "--instructions"], "does not combine"),
                (["--external-store", "x=s", "--handoff"], "does not combine"),
        ):
            self.assertIn(words, usage_error(argv), argv)

    def test_measured_beside_the_others(self):
        args = parse_args(["--servers", "dlockd,dlockd-redis", "--external", "daprd=h:1",
                           "--all"])
        self.assertEqual(workload_servers(args, "uncontended"),
                         ["dlockd", "dlockd-redis", "daprd"])
        self.assertEqual(workload_servers(args, "contended"), ["dlockd"])
        self.assertEqual(external_labels(args),
                         {"daprd": "daprd (external, h:1; not started by compare)"})

    def test_client_command_line(self):
        ext = External("daprd", "unix:/d/dapr-app-http.socket", store="redislock")
        argv = loadgen_argv(BINS, ext.target, "http", "uncontended", 64, 16, "0",
                            ("duration", 10), True, store=ext.store)
        self.assertEqual(argv[argv.index("--target") + 1], "unix:/d/dapr-app-http.socket")
        self.assertEqual(argv[argv.index("--store") + 1], "redislock")
        self.assertEqual(argv[-2:], ["--check", "--json"])
        self.assertNotIn("--store", loadgen_argv(BINS, 1, "http", "uncontended", 1, 1, "0",
                                                 ("duration", 1), False))
        self.assertEqual(ext.host, "localhost")
        self.assertEqual(External("x", "h:3500").host, "h:3500")

    def test_cpu_from_its_pids_or_none(self):
        me = External("me", "h:1", [os.getpid()])
        ticks, companions = me.cpu_ticks()
        self.assertGreaterEqual(ticks, 0)
        self.assertEqual(companions, 0)
        self.assertIsInstance(me.sleeps(), int)
        me.check_alive()
        self.assertIn(f"PID {os.getpid()} on CPUs ", me.describe())
        none = External("none", "h:1")
        self.assertIsNone(none.cpu_ticks())
        self.assertIsNone(none.sleeps())
        self.assertIn("no PID given: server CPU and sleeps not measured (–)", none.describe())
        gone = External("gone", "h:1", [2147483000])
        with self.assertRaises(Fail) as e:
            gone.check_alive()
        self.assertIn("2147483000 is gone", str(e.exception))

    def test_an_address_nothing_answers_on_fails_the_probe(self):
        with tempfile.TemporaryDirectory() as d:
            ext = External("sidecar", f"unix:{d}/none.socket", store="s1")
            with self.assertRaises(Fail) as e:
                probe_externals([ext], timeout=1.0)
        text = str(e.exception)
        self.assertIn(f"--external sidecar=unix:{d}/none.socket", text)
        self.assertIn("store 's1'", text)
        self.assertIn("compare does not start external servers", text)

    def test_table_without_cpu_and_its_ratios(self):
        ext = summarize([run(50_000, p99=400, cpu_us=None, ticks=None,
                             server_sleeps_per_kreq=None)])
        self.assertIsNone(ext["cpu"])
        self.assertIsNone(ext["ticks"])
        self.assertIsNone(ext["sleeps"])
        sums = {"dlockd": summary(100_000, 200, 4.0, ticks=50),
                "dlockd-redis": summary(60_000, 300, 8.0), "daprd": ext}
        t = side_by_side_table("x", sums, ["dlockd", "dlockd-redis", "daprd"],
                               labels={"daprd": "daprd (external, h:1; not started by compare)"},
                               externals=["daprd"])
        self.assertIn("| daprd (external, h:1; not started by compare) | 50.0 k | 50.0 k–50.0 k "
                      "| 200 | 400 | 800 | – | 4.00 | – |", t)
        self.assertIn("| dlockd / daprd | 2.00 | – | 0.50 |", t)
        self.assertIn("| dlockd-redis / daprd | 1.20 | – | 0.75 |", t)
        # Its missing CPU time is not "coarse"; dlockd's is.
        self.assertIn("CPU time of dlockd was under", t)
        self.assertNotIn("dlockd, daprd was under", t)

    def test_the_section_says_compare_did_not_start_them(self):
        args = parse_args(["--external", f"daprd=127.0.0.1:3500@{os.getpid()}",
                           "--external-store", "daprd=redislock"])
        s = section_text("side by side", args, [], {}, now="n", commit="c", command="x")
        line = next(x for x in s.splitlines() if x.startswith("- external servers"))
        self.assertIn("compare neither started, stopped nor pinned them", line)
        self.assertIn("`daprd` at `127.0.0.1:3500`, store `redislock`, server CPU from /proc "
                      f"of PID {os.getpid()}", line)


class EtcdServers(unittest.TestCase):
    """etcd, etcd-3, dlockd-etcd and dlockd-etcd-3: their command lines, their client, their
    CPU time, their tables and targets. No etcd is started."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.workdir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_only_when_named(self):
        self.assertFalse(set(parse_args([]).servers) & {"etcd", "etcd-3", "dlockd-etcd",
                                                         "dlockd-etcd-3"})
        a = parse_args(["--servers", "dlockd-etcd,etcd,dlockd-etcd-3,etcd-3"])
        self.assertEqual(a.servers, ["dlockd-etcd", "etcd", "dlockd-etcd-3", "etcd-3"])
        self.assertEqual(workload_servers(a, "uncontended"), a.servers)
        self.assertEqual(workload_servers(parse_args(["--servers", "etcd,dlockd-etcd",
                                                      "--all"]), "contended"), [])
        for mode in ("--instructions", "--memory", "--open-loop", "--handoff"):
            self.assertIn("side by side only",
                          usage_error(["--servers", "dlockd,redis,etcd", mode]), mode)
        self.assertIn("dlockd-etcd", config.DLOCKD_SERVERS)  # probed, /metrics read
        self.assertEqual(protocol_of("etcd"), "etcd")
        self.assertEqual(protocol_of("etcd-3"), "etcd")
        self.assertEqual(protocol_of("dlockd-etcd-3"), "http")

    def test_members(self):
        clients, peers = [5001, 5002, 5003], [6001, 6002, 6003]
        argv, cpus = etcd_member_argv("etcd-3", 1, clients, peers, self.workdir)
        self.assertEqual(cpus, config.SERVER_CPU)  # pinned as the redis anchor
        flag = lambda f: argv[argv.index(f) + 1]  # noqa: E731
        self.assertEqual(flag("--name"), "m1")
        self.assertEqual(flag("--listen-client-urls"), "http://127.0.0.1:5002")
        self.assertEqual(flag("--advertise-client-urls"), "http://127.0.0.1:5002")
        self.assertEqual(flag("--listen-peer-urls"), "http://127.0.0.1:6002")
        self.assertEqual(flag("--initial-advertise-peer-urls"), "http://127.0.0.1:6002")
        self.assertEqual(flag("--initial-cluster"), "m0=http://127.0.0.1:6001,"
                         "m1=http://127.0.0.1:6002,m2=http://127.0.0.1:6003")
        self.assertEqual(flag("--initial-cluster-state"), "new")
        ddir = flag("--data-dir")
        self.assertTrue(ddir.startswith(self.workdir))
        self.assertEqual(os.listdir(ddir), [])
        again, _ = etcd_member_argv("etcd-3", 1, clients, peers, self.workdir)
        self.assertNotEqual(again[again.index("--data-dir") + 1], ddir)  # fresh every start
        # A production member's defaults: fsync on, no flag that trades durability or limits.
        for f in ("--unsafe-no-fsync", "--snapshot-count", "--quota-backend-bytes",
                  "--heartbeat-interval", "--election-timeout", "--auto-compaction-retention"):
            self.assertNotIn(f, argv)

    def test_clusters(self):
        one = new_server("etcd", BINS, 4000, self.workdir, 1.0)
        self.assertIsInstance(one, EtcdCluster)
        self.assertEqual(one.ports, [4000])
        self.assertEqual(one.target, "127.0.0.1:4000")
        three = new_server("etcd-3", BINS, 4100, self.workdir, 1.0)
        self.assertEqual(len(three.members), 3)
        self.assertEqual(three.ports[0], 4100)
        self.assertEqual(len(set(three.ports)), 3)
        self.assertEqual(three.target, ",".join(f"127.0.0.1:{p}" for p in three.ports))
        peers = {m.argv[m.argv.index("--listen-peer-urls") + 1] for m in three.members}
        self.assertEqual(len(peers), 3)
        self.assertFalse(three.says_driver)
        self.assertEqual(three.companions, [])
        self.assertEqual([m.name for m in three.members], ["etcd-3-m0", "etcd-3-m1", "etcd-3-m2"])
        # The client: etcd's calls to every member.
        argv = loadgen_argv(BINS, three.target, protocol_of("etcd-3"), "uncontended", 64, 16,
                            "1", ("duration", 10), True)
        self.assertEqual(argv[argv.index("--target") + 1], three.target)
        self.assertEqual(argv[argv.index("--protocol") + 1], "etcd")

    def test_dlockd_on_its_own_cluster(self):
        server = new_server("dlockd-etcd-3", BINS, 4000, self.workdir, 1.0)
        self.assertEqual(server.name, "dlockd-etcd-3")
        (cluster,) = server.companions
        self.assertEqual((cluster.name, len(cluster.members)), ("etcd-3", 3))
        self.assertNotIn(4000, cluster.ports)
        self.assertFalse(server.count_companions)
        argv = server.argv[server.argv.index("/b/dlockd"):]
        cdir = Path(argv[argv.index("--resources-path") + 1])
        text = (cdir / f"{config.PROBE_STORE}.yaml").read_text()
        self.assertIn("type: lock.etcd", text)
        self.assertIn(f'value: "{cluster.target}"', text)
        self.assertIn("--app-id=", argv)
        self.assertEqual(argv[argv.index("--workers") + 1], "1")
        self.assertEqual(argv[argv.index("--grpc-listen") + 1], "127.0.0.1:0")
        self.assertEqual(server.argv[:3], ["taskset", "-c", config.SERVER_CPU])
        self.assertEqual(new_server("dlockd-etcd", BINS, 4000, self.workdir,
                                    1.0).companions[0].name, "etcd")
        with self.assertRaises(Fail):
            server_argv("dlockd-etcd", BINS, 4000, self.workdir)  # no cluster given

    def test_dlockds_cpu_is_its_own(self):
        class Cluster:
            def cpu_ticks(self):
                return 700, 0

            def sleeps(self):
                return 50

        me = Server("dlockd-etcd", ["true"], 4000, self.workdir, 1.0, "0", [Cluster()],
                    count_companions=False)
        me.proc = mock.Mock(pid=os.getpid())
        own, theirs = me.cpu_ticks()
        self.assertEqual(theirs, 700)
        self.assertLess(own, 700 + own)  # dlockd's alone
        from compare_lib.procs import cpu_ticks, voluntary_switches
        self.assertLessEqual(own, cpu_ticks(os.getpid()))
        self.assertLessEqual(me.sleeps(), voluntary_switches(os.getpid()))
        counted = Server("dlockd-redis", ["true"], 4000, self.workdir, 1.0, "0", [Cluster()])
        counted.proc = mock.Mock(pid=os.getpid())
        self.assertGreaterEqual(counted.cpu_ticks()[0], 700)
        self.assertGreaterEqual(counted.sleeps(), 50)

    def test_warm_up_checks(self):
        self.assertTrue(warm_up_checked("etcd", 16))
        self.assertTrue(warm_up_checked("etcd-3", 1))
        self.assertTrue(warm_up_checked("dlockd-etcd", 1))
        # Pipelined, dlockd's etcd store reorders a connection's requests: counted, not
        # checked.
        self.assertFalse(warm_up_checked("dlockd-etcd", 16))
        self.assertTrue(warm_up_checked("dlockd", 16))
        self.assertFalse(warm_up_checked("redis", 1))

    def test_prefix_end(self):
        self.assertEqual(etcdapi.prefix_end(b"lock||"), b"lock|}")
        self.assertEqual(etcdapi.prefix_end(b"a\xff"), b"b")
        self.assertEqual(etcdapi.prefix_end(b"\xff"), b"\0")
        self.assertEqual(etcdapi.b64("lock||"), "bG9ja3x8")

    def sums(self, wrong=None, leader_first=None):
        store = summarize([run(2_000, p99=40_000, cpu_us=60.0, companion_cpu_us=250.0,
                               **({"wrong_per_kreq": wrong} if wrong is not None else {}))])
        store3 = summarize([run(900, p99=90_000, cpu_us=70.0, companion_cpu_us=600.0,
                                **({"leader_first": leader_first}
                                   if leader_first is not None else {}))])
        return {"dlockd-etcd": store, "etcd": summary(1_600, 60_000, 320.0),
                "dlockd-etcd-3": store3, "etcd-3": summary(1_000, 100_000, 350.0)}

    def test_table_ratios_and_targets(self):
        names = ["dlockd-etcd", "etcd", "dlockd-etcd-3", "etcd-3"]
        t = side_by_side_table("x", self.sums(leader_first=True), names, placement="split",
                               depth=1, connections=64)
        self.assertIn("| dlockd, 1 worker, lock.etcd store (dlockd's CPU only; its etcd: 1 "
                      "member) | 2.0 k |", t)
        self.assertIn("| etcd, 3 members (gRPC: dlockd's etcd calls, from the client) |", t)
        self.assertIn("| dlockd-etcd / etcd | 1.25 | 0.19 | 0.67 |", t)
        self.assertIn("| dlockd-etcd-3 / etcd-3 | 0.90 | 0.20 | 0.90 |", t)
        self.assertIn("its etcd (1 member) spent 250.00 µs/req beside it (median), against "
                      "320.00 µs/req driven directly", t)
        self.assertIn("that member led its cluster in 1 of 1 runs", t)
        self.assertIn("| req/s, dlockd-etcd / etcd (1 member), depth 1 | ≥ 0.8 × | 1.25 | met |",
                      t)
        self.assertIn("| server CPU per request (dlockd's own / etcd's), dlockd-etcd / etcd "
                      "(1 member), depth 1 | ≤ 0.25 × | 0.19 | met |", t)
        self.assertIn("| req/s, dlockd-etcd-3 / etcd-3 (3 members), depth 1 | ≥ 0.8 × | 0.90 | "
                      "met |", t)
        # Every placement and depth has its target rows (the issue states them for all).
        sums = self.sums()
        sums["dlockd-etcd"] = summarize([run(1_000, cpu_us=100.0, companion_cpu_us=250.0)])
        t = side_by_side_table("x", sums, names, placement="colo", depth=16, connections=64)
        self.assertIn("| req/s, dlockd-etcd / etcd (1 member), depth 16 | ≥ 0.8 × | 0.62 | "
                      "not met |", t)
        self.assertIn("etcd (1 member), depth 16 | ≤ 0.25 × | 0.31 | not met |", t)
        self.assertNotIn("led its cluster", t)
        # Without its anchor there is nothing to set dlockd-etcd against.
        t = side_by_side_table("x", {"dlockd-etcd": sums["dlockd-etcd"]}, ["dlockd-etcd"],
                               depth=1)
        self.assertNotIn("| etcd store |", t)
        self.assertNotIn("| target |", t)

    def test_wrong_answers_are_said_and_not_judged(self):
        names = ["dlockd-etcd", "etcd"]
        sums = {k: v for k, v in self.sums(wrong=214.5).items() if k in names}
        t = side_by_side_table("x", sums, names, placement="colo", depth=16, connections=64)
        self.assertIn("**dlockd-etcd answered up to 214.50 of every 1,000 requests wrong**", t)
        self.assertIn("with 16 requests pipelined on a connection", t)
        self.assertIn("| req/s, dlockd-etcd / etcd (1 member), depth 16 | ≥ 0.8 × | 1.25 | "
                      "not judged: wrong answers |", t)
        self.assertEqual(t.count("| met |"), 1)  # the targets' header, no verdict
        sums = {k: v for k, v in self.sums(wrong=0.0).items() if k in names}
        t = side_by_side_table("x", sums, names, depth=1)
        self.assertNotIn("wrong", t)

    def test_the_section_says_how_they_ran(self):
        args = parse_args(["--servers", "dlockd-etcd,etcd,dlockd-etcd-3,etcd-3"])
        s = section_text("side by side", args, [], {"etcd": "etcd Version: 3.4.23; x",
                                                   "loadgen driver, etcd": "tokio"},
                         now="n", commit="c", command="x")
        self.assertIn("- etcd: etcd Version: 3.4.23; x", s)
        self.assertIn("- loadgen driver, etcd: tokio", s)
        self.assertIn("--protocol http|resp|etcd", s)
        line = next(x for x in s.splitlines() if x.startswith("- etcd clusters:"))
        self.assertIn("its WAL fsynced at every commit", line)
        self.assertIn("every member pinned to CPU 0", line)
        self.assertIn("etcd-3's three members share CPU 0", line)
        line = next(x for x in s.splitlines() if x.startswith("- etcd and etcd-3:"))
        self.assertIn("`LeaseGrant`, then one `Txn`", line)
        line = next(x for x in s.splitlines() if x.startswith("- dlockd-etcd and dlockd-etcd-3:"))
        self.assertIn("**Its server CPU is dlockd's process alone**", line)
        self.assertIn("lock||perf-compare-probe", line)
        s = section_text("side by side", parse_args(["--servers", "dlockd"]), [], {},
                         now="n", commit="c", command="x")
        self.assertNotIn("etcd", s)

