"""Setup: the Debian packages the anchors need, and the cargo builds."""

import json
import os
import shutil
import signal
import subprocess

from .common import Fail, log
from .config import APT_PACKAGES, ETCD_APT_PACKAGES, LOADGEN_MANIFEST, ROOT


def installed(pkg):
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", pkg],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    return r.returncode == 0 and r.stdout.strip() == "install ok installed"


def ensure_packages(etcd=False):
    """Installs the anchors' Debian packages that are missing (with `etcd`, etcd's too, unless
    an etcd is on the PATH)."""
    wanted = list(APT_PACKAGES)
    if etcd and shutil.which("etcd") is None:
        wanted += ETCD_APT_PACKAGES
    if shutil.which("dpkg-query") is None:
        for cmd in ["redis-server", "redis-cli", "nginx", "valgrind", "callgrind_control",
                    *(["etcd"] if etcd else [])]:
            if shutil.which(cmd) is None:
                raise Fail(f"{cmd} is missing and this is not a Debian system: install it")
        return
    missing = [p for p in wanted if not installed(p)]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"== installing {' '.join(missing)}")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *missing]):
        if subprocess.run(sudo + cmd, env=env, check=False).returncode != 0:
            raise Fail(f"`{' '.join(sudo + cmd)}` failed")


def cargo_build(extra, wanted, cwd=ROOT, env=None, note=""):
    """Build with cargo in `cwd` (with the environment `env`, default this process's) and
    return {binary name: path} for the executables in `wanted`, wherever CARGO_TARGET_DIR
    puts them. `note` follows the command in the log."""
    cmd = ["cargo", "build", "--release", "--message-format=json-render-diagnostics", *extra]
    log(f"== {' '.join(cmd[:3] + cmd[4:])}{note}")
    # Its own process group, so that on an error, Ctrl-C or SIGTERM cargo and the rustc
    # processes it started stop together (a rustc outlives a killed cargo otherwise).
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    if proc.returncode != 0:
        raise Fail(f"`{' '.join(cmd)}` failed (exit {proc.returncode})")
    found = {}
    for line in stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            found[msg["target"]["name"]] = msg["executable"]
    missing = [w for w in wanted if w not in found]
    if missing:
        raise Fail(f"`{' '.join(cmd)}` built no binary named {', '.join(missing)}")
    return {w: found[w] for w in wanted}


def build():
    bins = cargo_build([], ["dlockd", "dlockd-ceiling"])
    if not LOADGEN_MANIFEST.exists():
        raise Fail(f"{LOADGEN_MANIFEST.relative_to(ROOT)} does not exist: no load generator")
    bins.update(cargo_build(["--manifest-path", str(LOADGEN_MANIFEST)], ["dlockd-loadgen"]))
    return bins
