"""Split a server's CPU time into kernel work per system call and user-space work per library,
from `perf record -g` samples (cpu-clock: only time on a CPU is sampled, waiting is not).

    perf record -F 1000 -g -p PID -o perf.data   # while a load runs; Ctrl-C (SIGINT) ends it
    python bench/cpusplit.py perf.data [--per-msg-us 70]

Python 3.11 frames are not visible to perf (py-spy covers those: `bench/run --profile`);
this answers what py-spy cannot: how much is the kernel, and in which system call.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter

SYSCALL = re.compile(r"^(?:__x64_sys_|__se_sys_|__do_sys_|__ia32_sys_)(\w+)")


def classify(stack: list[tuple[str, str]]) -> str:
    """stack: (symbol, dso) from the leaf up."""
    if not stack:
        return "unknown"
    kernel = [sym for sym, dso in stack if dso == "[kernel.kallsyms]"]
    if kernel:
        for sym in kernel:
            match = SYSCALL.match(sym)
            if match:
                return f"kernel: {match.group(1)}()"
        for sym in kernel:
            if "page_fault" in sym:
                return "kernel: page faults"
        if any(sym in ("finish_task_switch.isra.0", "finish_task_switch", "__schedule", "schedule") for sym in kernel):
            return "kernel: context switches (preempted or woken at a system call's exit)"
        return "kernel: other (interrupts, softirq, scheduling)"
    dso = stack[0][1].rsplit("/", 1)[-1]
    if dso.startswith("libpython") or dso.startswith("python"):
        return "user: CPython interpreter and objects"
    if dso.startswith("libc"):
        return "user: libc (malloc, memcpy, ...)"
    return f"user: {dso}"


def samples(data: str) -> Counter[str]:
    text = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    counts: Counter[str] = Counter()
    stack: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if stack:
                counts[classify(stack)] += 1
            stack = []
            continue
        if not line.startswith((" ", "\t")):
            if stack:
                counts[classify(stack)] += 1
            stack = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        sym, _, dso = rest.rpartition(" (")
        stack.append((sym.split("+", 1)[0].strip(), dso.rstrip(")")))
    if stack:
        counts[classify(stack)] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="perf.data from perf record -g")
    parser.add_argument("--per-msg-us", type=float, default=0.0, help="CPU µs per message, to print µs per part")
    args = parser.parse_args()
    counts = samples(args.data)
    total = sum(counts.values())
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    for name, count in counts.most_common():
        share = count / total
        us = f"  {share * args.per_msg_us:6.1f} µs/msg" if args.per_msg_us else ""
        print(f"  {share * 100:5.1f}%{us}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
