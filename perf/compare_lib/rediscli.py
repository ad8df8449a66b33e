"""redis-cli: commands to a redis-server, its memory and its key count."""

import re
import shlex
import shutil
import subprocess

from .common import Fail
from .config import REDIS_CLI_TIMEOUT_S


def redis_cli(port, *cmd):
    argv = [shutil.which("redis-cli") or "redis-cli", "-h", "127.0.0.1", "-p", str(port), *cmd]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=REDIS_CLI_TIMEOUT_S,
                           check=False)
    except subprocess.TimeoutExpired:
        raise Fail(f"`{shlex.join(argv)}` did not finish in {REDIS_CLI_TIMEOUT_S:.0f} s") from None
    if r.returncode != 0:
        raise Fail(f"`{shlex.join(argv)}` failed (exit {r.returncode}): {r.stdout.strip()}")
    return r.stdout


def redis_used_memory(port):
    """`used_memory` of INFO memory: the bytes Redis's allocator holds for data."""
    out = redis_cli(port, "INFO", "memory")
    m = re.search(r"^used_memory:(\d+)", out, re.M)
    if not m:
        raise Fail(f"redis-cli INFO memory on port {port} gave no used_memory:\n{out.strip()}")
    return int(m.group(1))


def redis_keys(port):
    out = redis_cli(port, "DBSIZE").strip()
    if not out.isdigit():
        raise Fail(f"redis-cli DBSIZE on port {port} answered {out!r}")
    return int(out)
