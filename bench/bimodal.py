"""Why is smtpgate's `small` CPU per message bimodal? Short loads, fresh servers, counts.
(`--tls` runs the tls scenario's load instead.)

Runs the `small` load (smtp-source, 20 lock-step sessions, 1 KiB messages) against a fresh
server process several times and records, per message, figures that do not depend on how
busy the machine is: event-loop iterations, ready events per poll and callbacks (the
default loop, counted inside the server by `smtpgate_sink.py --loop-stats`), system calls
(`perf stat` on syscall tracepoints, no ptrace), context switches of the server
(/proc/PID/status), and where the server and smtp-source ran (/proc/PID/stat field 39,
sampled every 5 ms). CPU µs/msg is recorded too, but on a shared machine it is the least
trustworthy column. Needs the set-up of `bench/run` (bench/.venv, smtp-source).

    bench/.venv/bin/python bench/bimodal.py --runs 8
    bench/.venv/bin/python bench/bimodal.py --runs 4 --pin same      # server and client on CPU 0
    bench/.venv/bin/python bench/bimodal.py --runs 4 --pin split     # server on CPU 0, client on 1
    bench/.venv/bin/python bench/bimodal.py --runs 4 --hashseed 0 --no-gc --server smtpgate-uvloop

Prints one line per run and writes every number to bench/.work/bimodal/<time>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import run as bench  # bench/run.py: process handling, smtp-source command lines
from procstat import stat_fields, user_system

SYSCALLS = ("epoll_wait", "epoll_pwait", "sendto", "recvfrom", "brk", "mmap", "munmap", "madvise", "mremap")


def minor_faults(pid: int) -> int:
    return int(stat_fields(pid)[7])  # minflt


def switches(pid: int) -> tuple[int, int]:
    voluntary = involuntary = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                voluntary = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                involuntary = int(line.split()[1])
    return voluntary, involuntary


class Placement(threading.Thread):
    """Samples the CPU that the server and the load generator last ran on (field 39)."""

    def __init__(self, server: int) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.client: int | None = None
        self.samples: list[tuple[int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            if self.client is None:
                continue
            try:
                self.samples.append((int(stat_fields(self.server)[36]), int(stat_fields(self.client)[36])))
            except (OSError, IndexError, ValueError):
                continue

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        same = sum(1 for s, c in self.samples if s == c)
        moves = sum(1 for a, b in zip(self.samples, self.samples[1:], strict=False) if a[0] != b[0])
        on: dict[str, int] = {}
        for s, _ in self.samples:
            on[str(s)] = on.get(str(s), 0) + 1
        return {"samples": len(self.samples), "same_cpu_share": same / len(self.samples), "server_moves": moves,
                "server_cpus": on}  # fmt: skip


def perf_available() -> bool:
    if not shutil.which("perf"):
        return False
    probe = subprocess.run(["perf", "stat", "-e", "syscalls:sys_enter_sendto", "true"], capture_output=True)
    return probe.returncode == 0


def start_perf(pid: int, out: Path) -> subprocess.Popen[Any]:
    events = ["raw_syscalls:sys_enter", "context-switches", "cpu-migrations"]
    events += [f"syscalls:sys_enter_{name}" for name in SYSCALLS]
    argv = ["perf", "stat", "-x", ",", "-o", str(out), "-p", str(pid), "-e", ",".join(events)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_perf(proc: subprocess.Popen[Any], out: Path) -> dict[str, int]:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            counts[parts[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "syscalls")] = int(
                parts[0]
            )
    return counts


def loop_stats(proc: subprocess.Popen[Any], path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    before = path.stat().st_mtime_ns
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.stat().st_mtime_ns != before:
            break
        time.sleep(0.02)
    time.sleep(0.05)
    return dict(json.loads(path.read_text()))


def one_run(args: argparse.Namespace, index: int, logs: Path, use_perf: bool) -> dict[str, Any]:
    table = {s.name: s for s in bench.server_table()}
    server = table[args.server]
    argv = list(server.argv)
    stats_path = logs / f"loop-{index}.json"
    if server.python and "uvloop" not in server.name and not args.no_loop_stats:
        argv += ["--loop-stats", str(stats_path)]
    if args.no_gc:
        argv.append("--no-gc")
    argv += args.server_arg
    env = dict(os.environ)
    if args.hashseed is not None:
        env["PYTHONHASHSEED"] = str(args.hashseed)
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    server = bench.Server(server.name, server.label, argv, python=server.python)
    pin_server, pin_client = {"none": (None, None), "same": ("0", "0"), "split": ("0", "1")}[args.pin]
    proc, port = start_server_env(server, logs, env)
    try:
        if pin_server is not None:
            for member in bench.process_tree(proc.pid):
                subprocess.run(["taskset", "-a", "-p", "-c", pin_server, str(member)], capture_output=True)
        warm = bench.tlsload(port, 4, 200, 1024, 50, True) if args.tls else bench.smtp_source(port, 4, 200, 1024, True)
        code, text = bench.run_client(warm, logs / "client.log", 120)
        if code != 0:
            raise RuntimeError(f"warm-up failed: {text[-200:]}")
        placement = Placement(proc.pid)
        placement.start()
        perf_out = logs / f"perf-{index}.csv"
        perf = start_perf(proc.pid, perf_out) if use_perf else None
        time.sleep(0.3 if perf else 0)
        loop0 = loop_stats(proc, stats_path)
        user0, sys0 = user_system(proc.pid)
        ns0 = bench.cpu_ns(proc.pid)
        vol0, inv0 = switches(proc.pid)
        flt0 = minor_faults(proc.pid)
        host0 = bench.host_cpu()
        kids0 = bench.children_cpu()
        start = time.monotonic()
        rounds = max(1, args.messages // 2000)
        for _ in range(rounds):
            if args.tls:  # the tls scenario's load: EHLO, STARTTLS, EHLO, then 100 messages per session
                client_argv = bench.tlsload(port, 20, 2000, 1024, 100, True)
            else:
                client_argv = bench.smtp_source(port, 20, 2000, 1024, True)
            if pin_client is not None:
                client_argv = ["taskset", "-c", pin_client, *client_argv]
            client = subprocess.Popen(client_argv, cwd=bench.BENCH, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # fmt: skip
            bench.STARTED.append(client)
            placement.client = client.pid
            out, _ = client.communicate(timeout=300)
            bench.STARTED.remove(client)
            placement.client = None
            if client.returncode != 0:
                raise RuntimeError(f"smtp-source failed: {out[-200:]!r}")
        seconds = time.monotonic() - start
        user1, sys1 = user_system(proc.pid)
        ns1 = bench.cpu_ns(proc.pid)
        vol1, inv1 = switches(proc.pid)
        flt1 = minor_faults(proc.pid)
        host1 = bench.host_cpu()
        kids1 = bench.children_cpu()
        loop1 = loop_stats(proc, stats_path)
        counts = stop_perf(perf, perf_out) if perf else {}
        placement.done.set()
        placement.join()
    finally:
        bench.stop(proc)
    n = rounds * 2000
    result: dict[str, Any] = {
        "run": index,
        "messages": n,
        "msgs_per_s": n / seconds,
        "cpu_us_per_msg": bench.cpu_delta((user0 + sys0, user1 + sys1), (ns0, ns1)) * 1e6 / n,
        "user_us_per_msg": (user1 - user0) * 1e6 / n,
        "sys_us_per_msg": (sys1 - sys0) * 1e6 / n,
        "client_cpu_us_per_msg": (kids1 - kids0) * 1e6 / n,
        "voluntary_cs_per_msg": (vol1 - vol0) / n,
        "involuntary_cs_per_msg": (inv1 - inv0) / n,
        "minor_faults_per_msg": (flt1 - flt0) / n,
        "host_busy_pct": (host1[0] - host0[0]) * 100 / max(1, host1[1] - host0[1]),
        "placement": placement.summary(),
        "syscalls_per_msg": {k: v / n for k, v in counts.items()},
    }
    if loop0 and loop1:
        delta = {k: loop1[k] - loop0[k] for k in ("iterations", "polls_blocking", "polls_empty", "events", "callbacks")}
        polls = {k: loop1["events_per_poll"].get(k, 0) - loop0["events_per_poll"].get(k, 0)
                 for k in loop1["events_per_poll"]}  # fmt: skip
        result["loop"] = {
            **{f"{k}_per_msg": v / n for k, v in delta.items()},
            "events_per_poll": delta["events"] / max(1, delta["iterations"]),
            "events_per_nonempty_poll": delta["events"] / max(1, delta["iterations"] - delta["polls_empty"]),
            "callbacks_per_iteration": delta["callbacks"] / max(1, delta["iterations"]),
            "poll_histogram": {k: v for k, v in polls.items() if v},
            "gc_collections": [b - a for a, b in zip(loop0["gc_collections"], loop1["gc_collections"], strict=True)],
        }
    return result


def start_server_env(server: bench.Server, logs: Path, env: dict[str, str]) -> tuple[subprocess.Popen[Any], int]:
    port = bench.free_port()
    values = {"port": str(port), "cert": str(bench.WORK / "cert.pem"), "key": str(bench.WORK / "key.pem")}
    argv = [part.format(**values) for part in server.argv]
    proc = bench.spawn(argv, logs / f"{server.name}.log", env=env)
    try:
        bench.wait_ready(proc, port)
    except Exception:
        bench.stop(proc)
        raise
    return proc, port


def line(result: dict[str, Any]) -> str:
    loop = result.get("loop", {})
    sc = result["syscalls_per_msg"]
    place = result["placement"]
    text = (f"#{result['run']:<2} {result['msgs_per_s']:7,.0f} msg/s  cpu {result['cpu_us_per_msg']:5.0f} µs/msg "
            f"(usr {result['user_us_per_msg']:4.0f} sys {result['sys_us_per_msg']:4.0f})  "
            f"flt {result['minor_faults_per_msg']:5.2f} vcs {result['voluntary_cs_per_msg']:5.2f} "
            f"ics {result['involuntary_cs_per_msg']:5.2f}  "
            f"same-cpu {place.get('same_cpu_share', 0):4.0%}  host {result['host_busy_pct']:3.0f}%")  # fmt: skip
    if loop:
        text += (f"  iter/msg {loop['iterations_per_msg']:5.2f} ev/poll {loop['events_per_poll']:5.2f} "
                 f"cb/msg {loop['callbacks_per_msg']:5.2f}")  # fmt: skip
    if sc:
        epoll = sc.get("epoll_wait", 0) + sc.get("epoll_pwait", 0)
        text += (f"  sys/msg {sc.get('syscalls', 0):5.1f} epoll {epoll:5.2f} send {sc.get('sendto', 0):4.2f} "
                 f"recv {sc.get('recvfrom', 0):4.2f} brk {sc.get('brk', 0):4.2f} mmap {sc.get('mmap', 0):4.2f} "
                 f"munmap {sc.get('munmap', 0):4.2f} mremap {sc.get('mremap', 0):4.2f} "
                 f"cs {sc.get('context-switches', 0):5.2f} "
                 f"migr {sc.get('cpu-migrations', 0):5.3f}")  # fmt: skip
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6, help="fresh server processes (default 6)")
    parser.add_argument("--messages", type=int, default=6000, help="per run, in rounds of 2,000 (default 6,000)")
    parser.add_argument("--server", default="smtpgate", help="a server of bench/run (default smtpgate)")
    parser.add_argument("--pin", choices=("none", "same", "split"), default="none",
                        help="taskset: same = server and smtp-source on CPU 0; split = server 0, client 1")  # fmt: skip
    parser.add_argument("--tls", action="store_true", help="the tls scenario's load (tlsload --tls) instead")
    parser.add_argument("--hashseed", type=int, help="PYTHONHASHSEED for the server")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set in the server's environment, e.g. MALLOC_MMAP_THRESHOLD_=1048576")  # fmt: skip
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for the server, e.g. --server-arg=--read-size=64")  # fmt: skip
    parser.add_argument("--no-gc", action="store_true", help="gc.disable() in the server")
    parser.add_argument("--no-loop-stats", action="store_true", help="do not count loop iterations")
    parser.add_argument("--no-perf", action="store_true", help="do not count system calls with perf")
    parser.add_argument("--label", default="", help="a word saved with the results")
    args = parser.parse_args()
    bench.ensure_certificate()
    use_perf = not args.no_perf and perf_available()
    if not use_perf and not args.no_perf:
        print("perf with syscall tracepoints is not available: no system call counts")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    logs = bench.WORK / "bimodal" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for index in range(1, args.runs + 1):
            result = one_run(args, index, logs, use_perf)
            results.append(result)
            print(line(result), flush=True)
    finally:
        bench.stop_all()
    load = os.getloadavg()
    record = {"args": vars(args), "load_average": load, "runs": results}
    out = bench.WORK / "bimodal" / f"{stamp}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out} (load average {load[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
