"""A summary of py-spy's raw output for `bench/run --profile`: the top frames, and the
samples grouped by what they were doing (system calls, the event loop, parsing, ...)."""

from __future__ import annotations

from pathlib import Path

# Where a sample's leaf frame goes in the per-message breakdown (profile.md). The frames that
# make a system call are named on their own: py-spy charges the call's time (kernel included)
# to the Python frame that made it.
SYSCALL_FRAMES = {
    "asyncio/selector_events.py:_SelectorSocketTransport.write": "send() of a reply",
    "asyncio/selector_events.py:_SelectorSocketTransport._read_ready__data_received": "recv() (+ asyncio's callback)",
    "selectors.py:EpollSelector.select": "epoll_wait() (py-spy also counts some waiting here as busy)",
}


def category(frame: str) -> str:
    where = frame.rsplit(":", 1)[0]
    if frame in SYSCALL_FRAMES:
        return "transport/socket system calls"
    if where.startswith("asyncio/") or where == "selectors.py":
        return "asyncio loop and transport (Python)"
    if where == "smtpgate/protocol/replies.py":
        return "reply formatting"
    if where.startswith("smtpgate/protocol/"):
        return "protocol core parsing"
    if where.startswith("smtpgate/") or where.endswith("smtpgate_sink.py"):
        return "handler/stream machinery (connection.py, stream.py, on_data)"
    return "other (" + where.split("/", 1)[0].removesuffix(".py") + ")"


def summarize_raw(raw: Path, top: int, cpu_us: float = 0.0) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks; with the
    CPU per message, a breakdown of it by category (self time of the leaf frame)."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            path = where.rsplit(":", 1)[0]
            for marker in ("/site-packages/", "/src/", "/lib/python3"):
                if marker in path:
                    path = path.split(marker, 1)[1]
                    break
            frames.append(f"{path}:{name}")
        if not frames:
            continue
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + count
    if not total:
        return "no samples\n"
    by_file: dict[str, int] = {}
    for name, count in self_counts.items():
        where = name.rsplit(":", 1)[0]
        group = where if where.startswith("smtpgate/") else where.split("/", 1)[0].removesuffix(".py")
        by_file[group] = by_file.get(group, 0) + count
    lines = [f"{total} samples of the busy server (idle time excluded)\n"]
    groups: dict[str, int] = {}
    calls: dict[str, int] = {}
    for name, count in self_counts.items():
        groups[category(name)] = groups.get(category(name), 0) + count
        if name in SYSCALL_FRAMES:
            calls[SYSCALL_FRAMES[name]] = calls.get(SYSCALL_FRAMES[name], 0) + count
    lines.append("Per message, by category (self time of the leaf frame" + (", µs from the CPU above):" if cpu_us
                                                                             else "):"))  # fmt: skip
    for name, count in sorted(groups.items(), key=lambda kv: -kv[1]):
        share = count / total
        lines.append(f"  {share * 100:5.1f}%" + (f"  {share * cpu_us:6.1f} µs" if cpu_us else "") + f"  {name}")
        if name == "transport/socket system calls":
            for call, n in sorted(calls.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {'':5} " + (f"  {n / total * cpu_us:6.1f} µs" if cpu_us else "") + f"    {call}")
    lines.append("\nSelf time by file (smtpgate) or module:")
    for name, count in sorted(by_file.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count * 100 / total:5.1f}%  {name}")
    lines.append(f"\nTop {top} functions by self time:")
    for name, count in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {count * 100 / total:5.1f}%  {name}")
    lines.append(f"\nTop {top} by inclusive time (smtpgate and asyncio frames):")
    ranked = sorted(incl_counts.items(), key=lambda kv: -kv[1])
    for name, count in [kv for kv in ranked if "smtpgate" in kv[0] or "asyncio" in kv[0]][:top]:
        lines.append(f"  {count * 100 / total:5.1f}%  {name}")
    return "\n".join(lines) + "\n"
