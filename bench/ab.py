"""A/B in wall-clock terms: server CPU per message and msgs/s for builds side by side.

Each variant is a server process started once; the loads are interleaved (A, B, C, A, B,
C, ...) so that a machine that slows down slows every variant alike. Figures are medians
over the repetitions, CPU is the server process's user + system time.

    bench/.venv/bin/python bench/ab.py before=DIR1 after=DIR2 node-nodelay=node-nodelay
    bench/.venv/bin/python bench/ab.py after=DIR2:uvloop node=node --tls --reps 7
    bench/.venv/bin/python bench/ab.py after=DIR2 node=node --tlsload   # tls's load, no TLS
    bench/.venv/bin/python bench/ab.py before=DIR1 after=DIR2 --length 1048576 --messages 500

A variant is NAME=WHAT[:LOOP]: WHAT is a directory put first on PYTHONPATH for the
smtpgate sink (a build unpacked by `scripts/build-compiled DIR`; empty for bench/.venv's
own install), or `node` / `node-nodelay` for Node's smtp-server. Run `bench/run --quick`
once first: it sets up bench/.venv, the Node packages and the certificate. Standard
library only; Linux (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import run as bench  # bench/run.py: the load generators' command lines

BENCH = Path(__file__).resolve().parent
PYTHON = str(BENCH / ".venv" / "bin" / "python")
CERT = ["--cert", str(BENCH / ".work" / "cert.pem"), "--key", str(BENCH / ".work" / "key.pem")]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(spec: str, port: int) -> subprocess.Popen[str]:
    what, _, loop = spec.partition(":")
    env = dict(os.environ)
    if what in ("node", "node-nodelay"):
        argv = ["node", "node/sink.js", "--port", str(port), *CERT]
        argv += ["--no-greeting-delay"] if what == "node-nodelay" else []
    else:
        if what:
            env["PYTHONPATH"] = what
        argv = [PYTHON, "servers/smtpgate_sink.py", "--port", str(port), "--loop", loop or "asyncio"]
        argv += ["--defaults", *CERT]
    server = subprocess.Popen(argv, cwd=BENCH, env=env, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    if not server.stdout.readline().startswith("READY"):
        server.kill()
        raise SystemExit(f"{spec}: the server did not start")
    return server


def load(port: int, messages: int, tls: bool, tlsload: bool = False, length: int = 1024) -> None:
    if tls or tlsload:
        argv = bench.tlsload(port, 20, messages, length, 100, tls)
    else:
        argv = bench.smtp_source(port, 20, messages, length, keep=True)
    subprocess.run(argv, cwd=BENCH, check=True, stdout=subprocess.DEVNULL, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="NAME=DIR[:LOOP], NAME=node or NAME=node-nodelay")
    parser.add_argument("--tls", action="store_true", help="STARTTLS sessions (tlsload) instead of smtp-source")
    parser.add_argument("--tlsload", action="store_true",
                        help="tlsload without TLS: the tls scenario's load pattern in plain text")  # fmt: skip
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    parser.add_argument("--messages", type=int, default=10_000, help="messages per repetition (default 10,000)")
    parser.add_argument("--length", type=int, default=1024, help="bytes per message (default 1024)")
    parser.add_argument("--port", type=int, default=30025, help="first port; one per variant (default 30025)")
    args = parser.parse_args()
    variants: list[tuple[str, int, subprocess.Popen[str], list[tuple[float, float]]]] = []
    try:
        for offset, item in enumerate(args.variants):
            name, _, spec = item.partition("=")
            port = args.port + offset
            variants.append((name, port, start(spec, port), []))
        for _, port, _, _ in variants:  # warm-up
            load(port, min(2_000, args.messages), args.tls, args.tlsload, args.length)
        for _ in range(args.reps):
            for _, port, server, results in variants:
                cpu, clock = cpu_seconds(server.pid), time.monotonic()
                load(port, args.messages, args.tls, args.tlsload, args.length)
                elapsed = time.monotonic() - clock
                results.append(((cpu_seconds(server.pid) - cpu) / args.messages * 1e6, args.messages / elapsed))
        for name, _, _, results in variants:
            us = [cpu for cpu, _ in results]
            rates = [rate for _, rate in results]
            print(
                f"{name:14s} CPU µs/msg {statistics.median(us):6.1f} (min {min(us):6.1f}, max {max(us):6.1f})"
                f"   msgs/s {statistics.median(rates):7.0f}"
            )
    finally:
        for _, _, server, _ in variants:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
