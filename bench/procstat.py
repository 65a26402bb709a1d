"""What /proc says of a process tree and of the host: CPU time (in clock ticks and, where
the kernel keeps it, in nanoseconds), minor page faults, memory, and how busy the CPUs were."""

from __future__ import annotations

import os
import resource

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (state) on; empty if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return []
    return stat[stat.rindex(")") + 2 :].split()


def proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = stat_fields(int(entry)) if entry.isdigit() else []
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))  # by ppid
    return children


def process_tree(pid: int) -> list[int]:
    children = proc_children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int, tree: list[int] | None = None) -> float:
    """utime + stime of the process, its live descendants and its waited-for children
    (``tree``: the process tree if the caller has read it already)."""
    total = 0
    for member in tree or process_tree(pid):
        fields = stat_fields(member)
        if fields:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def cpu_ns(pid: int, tree: list[int] | None = None) -> int | None:
    """Time on a CPU of every thread of the process tree, in ns (/proc/.../task/TID/schedstat).
    Much finer than the 10 ms ticks of /proc/PID/stat, which matters for short runs; None
    where the kernel has no schedstat."""
    total = 0
    for member in tree or process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{member}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                return None
    return total


def cpu_delta(ticks: tuple[float, float], ns: tuple[int | None, int | None]) -> float:
    """Seconds of server CPU between two readings: the ns clock when it is there and agrees
    with the tick count (a thread that exited in between takes its time with it; then the
    ticks, which keep the time of waited-for children, are used)."""
    coarse = ticks[1] - ticks[0]
    if ns[0] is None or ns[1] is None:
        return coarse
    fine = (ns[1] - ns[0]) / 1e9
    return fine if fine >= coarse - 0.05 else coarse


def minor_faults(pid: int, tree: list[int] | None = None) -> int:
    """Minor page faults of the process tree: a machine-independent sign of memory churn
    (e.g. a fresh mmap for every read, see profile.md "Why small is bimodal")."""
    total = 0
    for member in tree or process_tree(pid):
        fields = stat_fields(member)
        if fields:
            total += int(fields[7])  # minflt
    return total


def status_kib(pid: int, key: str) -> int:
    """VmHWM / VmRSS in KiB, summed over the process tree."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def user_system(pid: int) -> tuple[float, float]:
    """utime and stime of the process, seconds."""
    fields = stat_fields(pid)
    if not fields:
        raise ProcessLookupError(pid)
    return int(fields[11]) / TICK, int(fields[12]) / TICK
