"""--baseline REV: dlockd built from another commit of this repository, measured beside
dlockd as dlockd-base (and beside dlockd-2w as dlockd-base-2w)."""

import os
import shutil
import subprocess
from pathlib import Path

from .build import cargo_build
from .common import Fail, log
from .config import ROOT


def git(*args):
    """git's standard output in this repository, stripped, or None when git fails."""
    r = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                       check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def resolve(rev):
    """(full id, short id, subject) of the commit that `rev` names in this repository, None
    when it names none."""
    full = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if not full:
        return None
    short = git("rev-parse", "--short", full) or full[:7]
    subject = git("log", "-1", "--format=%s", full) or ""
    return full, short, subject


def build_baseline(commit, short, workdir):
    """dlockd built from `commit`: a git worktree of it in `workdir`, `cargo build --release
    --bin dlockd` there into a target dir of its own in `workdir`, then the worktree removed,
    also when the build fails. Returns the binary's path (in `workdir`, removed with it)."""
    src = Path(workdir) / "baseline-src"
    target = Path(workdir) / "baseline-target"
    cmd = ["git", "worktree", "add", "--detach", str(src), commit]
    log(f"== git worktree add --detach {src} {short}")
    r = subprocess.run(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    if r.returncode != 0:
        raise Fail(f"`{' '.join(cmd)}` failed (exit {r.returncode}):\n{r.stdout.strip()}")
    try:
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        return cargo_build(["--bin", "dlockd"], ["dlockd"], cwd=src, env=env,
                           note=f" (the baseline, {short}, in {src})")["dlockd"]
    finally:
        remove_worktree(src)


def remove_worktree(src):
    """Removes the git worktree at `src`: its files, and the repository's record of it."""
    r = subprocess.run(["git", "worktree", "remove", "--force", str(src)], cwd=ROOT,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    if r.returncode != 0:
        log(f"compare: `git worktree remove --force {src}` failed: {r.stdout.strip()}; "
            "removing its files and pruning the record")
        shutil.rmtree(src, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    else:
        log(f"== git worktree remove --force {src}")
