"""The smtpgate benchmark runner (standard library only).

Starts each server as its own process on 127.0.0.1, drives it with smtp-source (Postfix)
or tlsload (tlsload.c, for STARTTLS), and measures throughput, the server's CPU time and
memory, the load generator's CPU time and how busy the host was. In a send scenario, every repetition of
every server is a fresh process, all of them running side by side; the load goes out in
rounds, the processes taking turns (A1 B1 A2 B2, B2 A2 B1 A1, ...), and a repetition's
figure is the median over its rounds. Writes a markdown report and a JSON file of every run.

    bench/run                      # set-up, then the full run -> bench/RESULTS.md, bench/results.json
    bench/run --quick              # a short run for development -> bench/.work/quick/
    bench/run --quick --scenarios small,tls --servers smtpgate,node
    bench/run --profile            # smtpgate under py-spy in the small scenario: top functions

bench/README.md explains the scenarios and the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import compare
from lineup import MIB, Scenario, Server, scenario_table, server_table
from machine import caller_path, command_output, machine_info, versions
from procstat import (  # (also what bimodal.py and noise.py read through this module)
    children_cpu,
    cpu_delta,
    cpu_ns,
    cpu_seconds,
    host_cpu,
    minor_faults,
    process_tree,
    status_kib,
    user_system,
)
from pyspy import summarize_raw
from report import write_report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
PY = sys.executable
TLSLOAD = WORK / "tlsload"  # built by bench/run from tlsload.c
SENDER, RECIPIENT = "a@bench.local", "b@bench.local"

# ----------------------------------------------------------------------------- processes

STARTED: list[subprocess.Popen[Any]] = []


def spawn(argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")
    proc = subprocess.Popen(argv, cwd=BENCH, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    out.close()
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in its group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    if proc in STARTED:
        STARTED.remove(proc)


def stop_all() -> None:
    for proc in list(STARTED):
        stop(proc, grace=2.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[Any], port: int, timeout: float = 20.0) -> None:
    """Connect until the server greets; say QUIT."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    sock.recv(512)
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not greet within {timeout:.0f} s")
        time.sleep(0.1)


def start_server(server: Server, logs: Path) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    values = {"port": str(port), "cert": str(WORK / "cert.pem"), "key": str(WORK / "key.pem")}
    argv = [part.format(**values) for part in server.argv]
    env = {**os.environ, **server.env} if server.env else None
    proc = spawn(argv, logs / f"{server.name}.log", env=env)
    try:
        wait_ready(proc, port)
    except Exception:
        stop(proc)
        raise
    if PIN[0] is not None:
        for member in process_tree(proc.pid):  # every thread of every process (-a)
            subprocess.run(["taskset", "-a", "-p", "-c", PIN[0], str(member)], capture_output=True)
    return proc, port


# --pin: (CPU list of the server, CPU list of the load generator), set by main().
PIN_CHOICES = {"none": (None, None), "same": ("0", "0"), "split": ("0", "1")}
PIN: tuple[str | None, str | None] = (None, None)


def run_client(argv: list[str], log: Path, timeout: float) -> tuple[int, str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    if PIN[1] is not None:
        argv = ["taskset", "-c", PIN[1], *argv]
    proc = subprocess.Popen(
        argv, cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True
    )
    STARTED.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return -1, f"timeout after {timeout:.0f} s"
    finally:
        if proc in STARTED:
            STARTED.remove(proc)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(argv)}\n{out}{err}")
    return proc.returncode, (out + err).strip()


def smtp_source(port: int, sessions: int, messages: int, length: int, keep: bool) -> list[str]:
    argv = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(length)]
    if keep:
        argv.append("-d")
    return [*argv, "-M", "bench.local", "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"]


def tlsload(port: int, sessions: int, messages: int, length: int, per_session: int, tls: bool) -> list[str]:
    if not TLSLOAD.exists():
        raise RuntimeError(f"{TLSLOAD} is missing: bench/run builds it from tlsload.c")
    argv = [str(TLSLOAD), f"127.0.0.1:{port}", "-s", str(sessions), "-m", str(messages), "-l", str(length)]
    argv += ["--per-session", str(per_session or 1)]
    return argv + (["--tls"] if tls else [])


def ensure_certificate() -> None:
    if (WORK / "cert.pem").exists() and (WORK / "key.pem").exists():
        return
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=bench.local",
         "-keyout", str(WORK / "key.pem"), "-out", str(WORK / "cert.pem")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def raise_nofile(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ----------------------------------------------------------------------------- one run


def client_for(scenario: Scenario, port: int, load: str) -> list[str]:
    """The load generator's command line for one round of ``scenario``."""
    if scenario.tls or load == "tlsload":
        return tlsload(port, scenario.sessions, scenario.messages, scenario.length, scenario.per_session, scenario.tls)
    keep = scenario.per_session > 0
    return smtp_source(port, scenario.sessions, scenario.messages, scenario.length, keep)


def warm_up(scenario: Scenario, port: int, logs: Path, load: str = "") -> None:
    """One round of the scenario's load before measuring, not counted: the first allocations,
    caches and, for Node, its JIT compiler (smtp-server's first 2,000 messages in `small`
    cost it about three times what the next ones do)."""
    code, text = run_client(client_for(scenario, port, load), logs / "client.log", timeout=600)
    if code != 0:
        raise RuntimeError(f"warm-up failed ({code}): {text[-300:]}")


@dataclass
class Live:
    """A server started for one repetition, and what its rounds measured."""

    server: Server
    proc: subprocess.Popen[Any] | None
    port: int
    rounds: list[dict[str, float]]
    error: str = ""


def one_round(scenario: Scenario, live: Live, logs: Path, load: str) -> dict[str, float]:
    """Send one round of the scenario to one server; its counters over that round."""
    assert live.proc is not None
    pid = live.proc.pid
    tree = process_tree(pid)  # (one walk of /proc for the three readings)
    cpu0, ns0, faults0 = cpu_seconds(pid, tree), cpu_ns(pid, tree), minor_faults(pid, tree)
    host0, kids0 = host_cpu(), children_cpu()
    start = time.monotonic()
    code, text = run_client(client_for(scenario, live.port, load), logs / "client.log", timeout=600)
    seconds = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"load generator failed ({code}): {text[-300:]}")
    tree = process_tree(pid)
    cpu1, ns1, faults1 = cpu_seconds(pid, tree), cpu_ns(pid, tree), minor_faults(pid, tree)
    host1, kids1 = host_cpu(), children_cpu()
    if live.proc.poll() is not None:
        raise RuntimeError(f"server exited with {live.proc.returncode}")
    return {
        "seconds": seconds,
        "cpu": cpu_delta((cpu0, cpu1), (ns0, ns1)),
        "faults": faults1 - faults0,
        "client_cpu": kids1 - kids0,
        "busy": host1[0] - host0[0],
        "total": host1[1] - host0[1],
        "client_errors": tlsload_errors(text),
    }


def measure_sends(scenario: Scenario, servers: list[Server], logs: Path, load: str = "") -> list[Any]:
    """A send scenario for every entry of ``servers`` (a server may be listed once per
    repetition): each entry is a fresh server process, warmed up, then the rounds go out
    interleaved, round 1 to every entry in turn, round 2 in the reverse order, and so on.
    An entry's figures are medians over its rounds, so that a dip of the machine lasting a
    few seconds falls on every entry alike and moves no median, and a drift over minutes
    moves every entry alike. Returns each entry's result, or the text of its error."""
    live: list[Live] = []
    try:
        for server in servers:
            try:
                proc, port = start_server(server, logs)
            except Exception as error:
                live.append(Live(server, None, 0, [], str(error)[:300]))
                continue
            entry = Live(server, proc, port, [])
            live.append(entry)
            try:
                warm_up(scenario, port, logs, load)
            except Exception as error:
                entry.error = str(error)[:300]
        for index in range(scenario.rounds):
            for entry in live if index % 2 == 0 else live[::-1]:
                if entry.error:
                    continue
                try:
                    entry.rounds.append(one_round(scenario, entry, logs, load))
                except Exception as error:
                    entry.error = str(error)[:300]
        return [
            entry.error
            or summarise_rounds(scenario, entry.rounds, status_kib(entry.proc.pid, "VmHWM") if entry.proc else 0)
            for entry in live
        ]
    finally:
        for entry in live:
            if entry.proc is not None:
                stop(entry.proc)


def summarise_rounds(scenario: Scenario, rounds: list[dict[str, float]], peak_kib: int) -> dict[str, Any]:
    """One repetition's figures from its rounds: rates and CPU per message are medians over
    the rounds; page faults, the load generator's CPU and the host's load are totals."""
    per_round = scenario.messages
    messages = per_round * len(rounds)
    cpu_us = [r["cpu"] * 1e6 / per_round for r in rounds]
    rates = [per_round / r["seconds"] for r in rounds]
    seconds = sum(r["seconds"] for r in rounds)
    busy, total = sum(r["busy"] for r in rounds), sum(r["total"] for r in rounds)
    mib = scenario.length / MIB
    rate, cpu = statistics.median(rates), statistics.median(cpu_us)
    return {
        "messages": messages,
        "seconds": round(seconds, 4),
        "msgs_per_s": rate,
        "mib_per_s": rate * mib,
        "server_cpu_us_per_msg": cpu,
        "server_cpu_ms_per_mib": cpu / 1e3 / mib,
        "server_cpu_pct": sum(r["cpu"] for r in rounds) * 100 / seconds,
        "server_faults_per_msg": sum(r["faults"] for r in rounds) / messages,
        "client_cpu_us_per_msg": sum(r["client_cpu"] for r in rounds) * 1e6 / messages,
        "peak_rss_kib": peak_kib,
        "host_busy_pct": busy * 100 / total if total else 0.0,
        "client_errors": sum(int(r["client_errors"]) for r in rounds),
        "rounds_cpu_us_per_msg": [round(v, 2) for v in cpu_us],
        "rounds_msgs_per_s": [round(v, 1) for v in rates],
    }


def tlsload_errors(text: str) -> int:
    """Sessions tlsload had to retry (e.g. a stalled TLS handshake)."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                return int(json.loads(line).get("errors", 0))
            except ValueError:
                return 0
    return 0


def measure_hold(scenario: Scenario, server: Server, logs: Path) -> dict[str, Any]:
    proc, port = start_server(server, logs)
    client = None
    try:
        time.sleep(0.5)
        before = status_kib(proc.pid, "VmRSS")
        cpu0, host0, ns0 = cpu_seconds(proc.pid), host_cpu(), cpu_ns(proc.pid)
        argv = [PY, "holdload.py", f"127.0.0.1:{port}", "--hold", str(scenario.hold)]
        if scenario.tls:
            argv.append("--tls")
        if PIN[1] is not None:
            argv = ["taskset", "-c", PIN[1], *argv]
        with open(logs / "client.log", "a") as f:
            f.write(f"$ {' '.join(argv)}\n")
        client = subprocess.Popen(
            argv, cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, text=True,
        )  # fmt: skip
        STARTED.append(client)
        assert client.stdout is not None
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(client.stdout, selectors.EVENT_READ)
        start = time.monotonic()
        line = ""
        if selector.select(timeout=300):
            line = client.stdout.readline()
        selector.close()
        if not line.startswith("HELD"):
            raise RuntimeError(f"hold client: {line or 'no answer in 300 s'}")
        opened = time.monotonic() - start
        held = int(line.split()[1])
        time.sleep(1.0)
        after = status_kib(proc.pid, "VmRSS")
        cpu1, host1, ns1 = cpu_seconds(proc.pid), host_cpu(), cpu_ns(proc.pid)
        cpu1 = cpu0 + cpu_delta((cpu0, cpu1), (ns0, ns1))
        peak = status_kib(proc.pid, "VmHWM")
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if held < scenario.hold:
            raise RuntimeError(f"only {held} of {scenario.hold} connections held: {line.strip()}")
    finally:
        if client is not None:
            try:
                assert client.stdin is not None
                client.stdin.close()
                client.wait(30)
            except (subprocess.TimeoutExpired, OSError):
                pass
            stop(client)
        stop(proc)
    busy, total = host1[0] - host0[0], host1[1] - host0[1]
    return {
        "connections": held,
        "open_seconds": round(opened, 3),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / held,
        "server_cpu_us_per_conn": (cpu1 - cpu0) * 1e6 / held,
        "peak_rss_kib": peak,
        "host_busy_pct": busy * 100 / total if total else 0.0,
    }


# ----------------------------------------------------------------------------- profile


def profile(args: argparse.Namespace) -> int:
    """smtpgate in one scenario (small by default) under py-spy (or cProfile): top functions."""
    scenario = next(s for s in scenario_table(args.quick) if s.name == args.profile_scenario)
    logs = WORK / "profile"
    logs.mkdir(parents=True, exist_ok=True)
    wanted = "smtpgate-defaults" if args.profile_defaults else "smtpgate"
    wanted += "-uvloop" if args.profile_loop == "uvloop" else ""
    server = next(s for s in server_table() if s.name == wanted)
    if args.profiler == "cprofile":
        stats_file = logs / "smtpgate.prof"
        server = Server(server.name, server.label, [*server.argv, "--cprofile", str(stats_file)], python=True)
    proc, port = start_server(server, logs)
    spy = None
    raw = logs / "smtpgate.raw"
    try:
        warm_up(scenario, port, logs)
        if args.profiler == "py-spy":
            spy_bin = str(Path(PY).parent / "py-spy")
            spy = spawn([spy_bin, "record", "--pid", str(proc.pid), "--rate", "500", "--format", "raw",
                         "--output", str(raw), "--nonblocking"], logs / "py-spy.log")  # fmt: skip
            time.sleep(1.0)
        cpu0, split0, faults0 = cpu_seconds(proc.pid), user_system(proc.pid), minor_faults(proc.pid)
        start = time.monotonic()
        for _ in range(scenario.rounds):
            code, text = run_client(client_for(scenario, port, ""), logs / "client.log", timeout=600)
            if code != 0:
                raise RuntimeError(f"load generator failed: {text[-300:]}")
        seconds = time.monotonic() - start
        cpu = cpu_seconds(proc.pid) - cpu0
        split1, faults1 = user_system(proc.pid), minor_faults(proc.pid)
        messages = scenario.messages * scenario.rounds
        cpu_us = cpu * 1e6 / messages
        head = (f"{messages} messages in {seconds:.2f} s: {messages / seconds:,.0f} msgs/s, server CPU {cpu_us:.0f} "
                f"µs/msg (user {(split1[0] - split0[0]) * 1e6 / messages:.0f}, system "
                f"{(split1[1] - split0[1]) * 1e6 / messages:.0f}; with the profiler attached), "
                f"{(faults1 - faults0) / messages:.2f} page faults/msg")  # fmt: skip
    finally:
        if spy is not None and spy.poll() is None:
            os.killpg(spy.pid, signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                pass
            stop(spy)
        stop(proc)
    if args.profiler == "cprofile":
        import pstats

        stats = pstats.Stats(str(stats_file))
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(30)
        return 0
    if not raw.exists():
        print("py-spy wrote nothing; see", logs / "py-spy.log")
        return 1
    report = head + "\n\n" + summarize_raw(raw, args.top, cpu_us)
    (logs / f"profile-{scenario.name}.txt").write_text(report)
    print(report)
    return 0


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages, 1 repetition, results in .work/quick")
    parser.add_argument("--reps", type=int, help="repetitions per server and scenario (default 3, quick 1)")
    parser.add_argument("--scenarios", help="comma-separated: small,conn,large,tls,idle,idle-tls")
    parser.add_argument(
        "--servers",
        help="comma-separated: smtpgate,smtpgate-uvloop,smtpgate-defaults,smtpgate-defaults-uvloop,smtpgate-pure,"
        "aiosmtpd,aiosmtpd-uvloop,node,node-nodelay,smtp-sink (default: all)",
    )
    parser.add_argument("--out", help="directory for RESULTS.md and results.json")
    parser.add_argument("--rounds", type=int, help="rounds per repetition of every send scenario (default 10, quick 2)")
    parser.add_argument("--note", default="", help="a line shown at the top of the report")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the load generator ceiling runs")
    parser.add_argument(
        "--pin",
        choices=tuple(PIN_CHOICES),
        default="none",
        help="taskset: same = server and load generator on CPU 0 (steadiest CPU per message); "
        "split = server on CPU 0, load generator on CPU 1; none (default) = the scheduler decides",
    )
    parser.add_argument("--profile", action="store_true", help="profile smtpgate in the small scenario")
    parser.add_argument("--profiler", choices=("py-spy", "cprofile"), default="py-spy")
    parser.add_argument("--profile-loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--profile-defaults", action="store_true", help="profile smtpgate-defaults")
    parser.add_argument("--profile-scenario", choices=("small", "conn", "large", "tls"), default="small")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="only write RESULTS.md again from a results.json (into --out or beside it)",
    )
    parser.add_argument(
        "--compare",
        metavar="RESULTS_JSON",
        help="another run's results.json: RESULTS.md gains how far every median moved between the runs",
    )
    args = parser.parse_args()

    if args.render:
        other = caller_path(args.compare) if args.compare else None
        return render(caller_path(args.render), caller_path(args.out) if args.out else None, other)
    global PIN
    PIN = PIN_CHOICES[args.pin]
    nofile = raise_nofile()
    ensure_certificate()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    try:
        if args.profile:
            return profile(args)
        return benchmark(args, nofile)
    except KeyboardInterrupt:
        return 130
    finally:
        stop_all()


# The order servers run in within a repetition: Node's two variants in the middle of
# smtpgate's, so that the paired ratios compare runs a minute or so apart; every second
# repetition runs the order backwards, so that a steady drift of the machine favours no one.
RUN_ORDER = ("smtpgate-defaults-uvloop", "smtpgate-defaults", "node", "node-nodelay", "smtpgate", "smtpgate-uvloop",
             "smtpgate-pure", "aiosmtpd", "aiosmtpd-uvloop", "smtp-sink")  # fmt: skip


def run_order(servers: list[Server], rep: int) -> list[Server]:
    rank = {name: i for i, name in enumerate(RUN_ORDER)}
    ordered = sorted(servers, key=lambda s: rank.get(s.name, len(RUN_ORDER)))
    return ordered if rep % 2 else ordered[::-1]


def benchmark(args: argparse.Namespace, nofile: int) -> int:
    scenarios = scenario_table(args.quick)
    if args.rounds:
        scenarios = [Scenario(**{**s.__dict__, "rounds": args.rounds}) if s.kind == "send" else s for s in scenarios]
    servers = server_table()
    if args.scenarios:
        wanted = args.scenarios.split(",")
        unknown = set(wanted) - {s.name for s in scenarios}
        if unknown:
            sys.exit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.name in wanted]
    if args.servers:
        wanted = args.servers.split(",")
        unknown = set(wanted) - {s.name for s in servers}
        if unknown:
            sys.exit(f"unknown server(s): {', '.join(sorted(unknown))}")
        servers = [s for s in servers if s.name in wanted]
    reps = args.reps or (1 if args.quick else 3)
    other = compare.load(caller_path(args.compare)) if args.compare else None  # read now, not after the run
    out = caller_path(args.out) if args.out else (WORK / "quick" if args.quick else BENCH)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc)
    logs = WORK / "logs" / stamp.strftime("%Y%m%d-%H%M%S")
    needed = max((s.hold for s in scenarios), default=0)
    if needed and nofile < needed + 1000:
        print(f"warning: RLIMIT_NOFILE is {nofile}; the idle scenario needs about {needed + 1000}")
    meta: dict[str, Any] = {
        "date": stamp.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/run " + " ".join(command_arguments(sys.argv[1:])),
        "reps": reps,
        "note": args.note,
        "pin": args.pin,
        "machine": machine_info(),
        "versions": versions(),
        "sources": command_output([str(ROOT / "scripts" / "source-hash")]),  # what the build is made of
    }
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    for scenario in scenarios:
        # (rep, server) in the order they take turns: every repetition's servers side by side
        entries = [(rep, s) for rep in range(1, reps + 1) for s in run_order(servers, rep)
                   if (s.tls or not scenario.tls) and scenario.name not in s.skip]  # fmt: skip
        send = scenario.kind == "send"
        sent = measure_sends(scenario, [s for _, s in entries], logs) if send else []
        for index, (rep, server) in enumerate(entries):
            record: dict[str, Any] = {"scenario": scenario.name, "server": server.name, "rep": rep,
                                      "result": None, "error": None}  # fmt: skip
            try:
                outcome = sent[index] if send else measure_hold(scenario, server, logs)
                if isinstance(outcome, str):
                    record["error"] = outcome
                else:
                    record["result"] = outcome
            except Exception as error:
                record["error"] = str(error)[:300]
            runs.append(record)
            show(record, began)
        if scenario.name == "tls" and not args.no_ceiling:
            runs.extend(ceiling_runs(scenario, servers, logs, began))
    results = {"meta": meta, "scenarios": [s.__dict__ for s in scenarios], "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_report(meta, runs, scenarios, servers, out / "RESULTS.md", other)
    print(f"\nwrote {out / 'RESULTS.md'} and {out / 'results.json'} ({time.monotonic() - began:.0f} s)")
    return 0 if all(r["result"] for r in runs) else 1


def render(source: Path, out: Path | None, other: Path | None = None) -> int:
    data = json.loads(source.read_text())
    meta = data["meta"]
    meta["command"] = meta["command"].split(" --note ", 1)[0]
    known = {s.name: s for s in scenario_table(quick=False)}
    scenarios = []
    for item in data["scenarios"]:
        scenario = known.get(item["name"], Scenario(item["name"], item.get("title", ""), item["kind"]))
        scenarios.append(Scenario(**{**scenario.__dict__, **item}))
    target = (out or source.parent) / "RESULTS.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_report(meta, data["runs"], scenarios, server_table(), target, compare.load(other) if other else None)
    print(f"wrote {target}")
    return 0


def ceiling_runs(scenario: Scenario, servers: list[Server], logs: Path, began: float) -> list[dict[str, Any]]:
    """How fast can tlsload go? Plaintext tlsload against smtp-sink (far faster than the
    generator), next to smtp-source against smtp-sink: the generator's own ceiling."""
    table = {s.name: s for s in server_table()}
    sink = table["smtp-sink"]
    records = []
    plain = Scenario(scenario.name, "", "send", sessions=scenario.sessions, messages=scenario.messages,
                     rounds=scenario.rounds, per_session=scenario.per_session)  # fmt: skip
    for label, load in (("ceiling: tlsload, no TLS → smtp-sink", "tlsload"),
                        ("ceiling: smtp-source → smtp-sink", "")):  # fmt: skip
        record: dict[str, Any] = {"scenario": scenario.name + "-ceiling", "server": "smtp-sink", "label": label,
                                  "rep": 1, "result": None, "error": None}  # fmt: skip
        outcome = measure_sends(plain, [sink], logs, load=load)[0]
        if isinstance(outcome, str):
            record["error"] = outcome
        else:
            record["result"] = outcome
        records.append(record)
        show(record, began)
    return records


def command_arguments(argv: list[str]) -> list[str]:
    """The options as typed, without the --note text (it is shown on its own)."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            shown.append(arg)
    return shown


def show(record: dict[str, Any], began: float) -> None:
    elapsed = time.monotonic() - began
    head = f"[{elapsed:6.0f}s] {record['scenario']:<13} {record.get('label', record['server']):<22} #{record['rep']}"
    result = record["result"]
    if not result:
        print(f"{head}  FAILED: {record['error']}", flush=True)
    elif "msgs_per_s" in result:
        print(f"{head}  {result['msgs_per_s']:8,.0f} msgs/s {result['mib_per_s']:7.1f} MiB/s "
              f"cpu {result['server_cpu_us_per_msg']:6.0f} µs/msg  client {result['client_cpu_us_per_msg']:5.0f} "
              f"µs/msg  peak {result['peak_rss_kib'] / 1024:6.1f} MiB  host {result['host_busy_pct']:3.0f}%"
              + (f"  ({result['client_errors']} sessions retried)" if result.get("client_errors") else ""),
              flush=True)  # fmt: skip
    else:
        print(
            f"{head}  {result['kib_per_conn']:7.1f} KiB/conn ({result['connections']} held, "
            f"{result['rss_before_kib'] / 1024:.1f} → {result['rss_after_kib'] / 1024:.1f} MiB)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
