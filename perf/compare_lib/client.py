"""The client: the load generator's command line, running it, reading its JSON."""

import json
import os
import re
import shlex
import signal
import subprocess

from .common import Fail


def fmt_secs(s):
    return f"{int(s * 1000)}ms"


def client_target(port):
    """The client's --target for `port`: a loopback port (a number, or "PORT" in the section's
    template), or a server's whole address as it is ("unix:PATH", "HOST:PORT")."""
    if isinstance(port, str) and (port.startswith("unix:") or ":" in port):
        return port
    return f"127.0.0.1:{port}"


def loadgen_argv(bins, port, protocol, workload, connections, depth, cpu, amount, check,
                 rate=0, resources=None, expiry=None, pacer=None, extra=(), store=None):
    """The client's command line. `port` is a loopback port or a whole address (see
    client_target: a server's `target`). `amount` is ("duration", seconds) or ("requests",
    n); `rate` > 0 is open loop at that many requests/s, paced by `pacer` (the client's
    default, its 1 ms timer, when None); `resources` and `expiry` are the client's defaults
    when None; `store` the lock store it names (its default, lockstore, when None); `extra`
    is added before --check and --json (the handoff workloads' flags)."""
    argv = [
        "taskset", "-c", cpu,
        bins["dlockd-loadgen"],
        "--target", client_target(port),
        "--protocol", protocol,
        "--workload", workload,
        "--connections", str(connections),
        "--depth", str(depth),
        "--threads", "1",
        "--cpus", cpu,
        "--rate", str(rate),
        "--warmup", "0ms",
    ]
    if resources is not None:
        argv += ["--resources", str(resources)]
    if expiry is not None:
        argv += ["--expiry", str(expiry)]
    if pacer is not None:
        argv += ["--pacer", pacer]
    if store is not None:
        argv += ["--store", store]
    if amount[0] == "duration":
        argv += ["--duration", fmt_secs(amount[1])]
    else:
        argv += ["--requests", str(amount[1])]
    argv += list(extra)
    if check:
        argv.append("--check")
    argv.append("--json")
    return argv


def run_loadgen(argv, timeout, what):
    # Its own process group, so that on a timeout, an error or Ctrl-C the client and anything
    # it started go down together.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"{what}: the load generator did not finish in {timeout:.0f} s: "
                   f"{shlex.join(argv)}") from None
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    r = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if r.returncode != 0:
        raise Fail(
            f"{what}: the load generator failed (exit {r.returncode}): {shlex.join(argv)}\n"
            f"{(r.stdout.strip() + chr(10) + r.stderr.strip()).strip()}"
        )
    result = None
    for line in reversed(r.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                pass
    if result is None:
        raise Fail(f"{what}: no JSON line from the load generator: {shlex.join(argv)}\n"
                   f"stdout: {r.stdout.strip()}\nstderr: {r.stderr.strip()}")
    for key in ("requests", "rps", "p50_us", "p99_us", "p999_us", "errors"):
        if not isinstance(result.get(key), (int, float)):
            raise Fail(f"{what}: the load generator's JSON has no number `{key}`: {line}")
    if result["errors"]:
        raise Fail(f"{what}: {result['errors']} errors reported: {shlex.join(argv)}\n{line}\n"
                   f"{r.stderr.strip()}")
    if result["requests"] <= 0:
        raise Fail(f"{what}: no requests completed: {shlex.join(argv)}\n{line}")
    result["_stderr"] = r.stderr
    return result


def loadgen_driver(result):
    """The client's I/O driver, if it says (in its JSON or on stderr)."""
    for key in ("driver", "io_driver"):
        if isinstance(result.get(key), str):
            return result[key]
    m = re.search(r"(\w[\w-]*) driver", result.get("_stderr", ""))
    if m:
        return m.group(1)
    m = re.search(r"driver[:= ]+(\w[\w-]*)", result.get("_stderr", ""))
    return m.group(1) if m else None


def server_driver(startup_line):
    # "io_uring driver", "legacy (epoll) driver"
    m = re.search(r"(\w+(?: \(\w+\))?) driver", startup_line)
    if not m:
        return None
    fallback = re.search(r"driver \((.*)\)", startup_line)
    return m.group(1) + (f" ({fallback.group(1)})" if fallback else "")
