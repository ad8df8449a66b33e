"""Processes: free ports, and CPU time, context switches and RSS from /proc."""

import os
import re
import socket
from pathlib import Path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clock_ticks():
    return os.sysconf("SC_CLK_TCK")


def children_of():
    """{ppid: [pid]} over every process now running."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def process_tree(pid):
    """`pid` and every process below it now: nginx serves from a child of the process started
    here."""
    tree = children_of()
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def read_proc(path):
    """The text of a /proc file, or None if its process or thread is gone."""
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_ticks(pid):
    """utime + stime (fields 14 and 15 of /proc/PID/stat, clock ticks) of `pid` and every
    process below it."""
    total = 0
    for p in process_tree(pid):
        stat = read_proc(f"/proc/{p}/stat")
        if stat is None:
            continue
        # Field 2 (comm) may hold spaces and parentheses: count from the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 overall
    return total


def voluntary_switches(pid):
    """Voluntary context switches (a thread blocking, here: waiting for work, to be woken
    later) of every thread of `pid` and of every process below it, from
    /proc/PID/task/TID/status. A thread that exits takes its count with it."""
    total = 0
    for p in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            status = read_proc(f"/proc/{p}/task/{tid}/status")
            m = status and re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)
            if m:
                total += int(m.group(1))
    return total


def rss_kb(pid):
    """VmRSS (kB, from /proc/PID/status) of `pid` and every process below it, or None if
    `pid` is gone."""
    total, seen = 0, False
    for p in process_tree(pid):
        status = read_proc(f"/proc/{p}/status")
        m = status and re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.M)
        if m:
            total += int(m.group(1))
            seen = True
    return total if seen else None


def rss_anon_kb(pid):
    """RssAnon (kB, from /proc/PID/status: anonymous resident memory, the heap and the
    stacks, without the binary's mapped pages) of `pid` alone, or None if it is gone."""
    status = read_proc(f"/proc/{pid}/status")
    m = status and re.search(r"^RssAnon:\s+(\d+)\s+kB", status, re.M)
    return int(m.group(1)) if m else None


def run_ns(pid):
    """Nanoseconds on a CPU of every thread of `pid` and of every process below it, from
    /proc/PID/task/TID/schedstat (its first field): CPU time without the clock tick's
    10 ms resolution. A thread that exits takes its time with it."""
    total = 0
    for p in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            stat = read_proc(f"/proc/{p}/task/{tid}/schedstat")
            if stat and stat.split():
                total += int(stat.split()[0])
    return total
