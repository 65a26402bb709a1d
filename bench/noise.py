"""How steady is this machine? A fixed piece of CPU work, timed around each of a run of
identical loads on one smtpgate server, all on one CPU.

Each repetition times the probe (a fixed arithmetic loop in a fresh process; its CPU time,
not its wall time), sends --messages with smtp-source to the same server process, and
times the probe again. It prints each repetition, then the spread ((max - min) / median)
of the server's CPU per message, of the probe, and of the CPU per message scaled by the
probe, with the correlation between the two. If the probe tracked what makes the
server's figure move, scaling would steady it; a correlation near zero says the noise is
in how the load and the server share the CPU, not in the CPU's speed.

    bench/.venv/bin/python bench/noise.py [--reps 12] [--messages 10000] [--cpu 0] [--pythonpath DIR]

Run `bench/run --quick` once first (it sets up bench/.venv and Postfix's smtp-source).
Standard library only; Linux (reads /proc, uses taskset).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import run as bench  # bench/run.py: process CPU time, smtp-source command lines
from summary import spread

BENCH = Path(__file__).resolve().parent
PYTHON = str(BENCH / ".venv" / "bin" / "python")
PROBE = """import time
t = time.process_time()
s = 0
for i in range(1_500_000):
    s += i * i % 7
print(time.process_time() - t)
"""


def probe(cpu: str) -> float:
    """CPU seconds the fixed loop took on `cpu`."""
    done = subprocess.run(["taskset", "-c", cpu, PYTHON, "-c", PROBE], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=12, help="repetitions, at least 2 (default 12)")
    parser.add_argument("--messages", type=int, default=10_000, help="messages per repetition (default 10,000)")
    parser.add_argument("--cpu", default="0", help="the CPU for server, load and probe (default 0)")
    parser.add_argument("--port", type=int, default=30201, help="the server's port (default 30201)")
    parser.add_argument("--pythonpath", default="", help="a build to put first on the server's PYTHONPATH")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=args.pythonpath) if args.pythonpath else None
    server = subprocess.Popen(
        ["taskset", "-c", args.cpu, PYTHON, "servers/smtpgate_sink.py", "--port", str(args.port), "--defaults"],
        cwd=BENCH, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    try:
        if not server.stdout.readline().startswith("READY"):
            raise SystemExit("the server did not start")

        def load(messages: int) -> None:
            argv = bench.smtp_source(args.port, sessions=20, messages=messages, length=1024, keep=True)
            subprocess.run(["taskset", "-c", args.cpu, *argv], check=True, timeout=600)

        load(2_000)  # warm-up
        per_message: list[float] = []
        probes: list[float] = []
        for rep in range(1, args.reps + 1):
            before = probe(args.cpu)
            cpu = bench.cpu_seconds(server.pid)
            load(args.messages)
            per_message.append((bench.cpu_seconds(server.pid) - cpu) / args.messages * 1e6)
            after = probe(args.cpu)
            probes.append((before + after) / 2)
            print(f"{rep:3d}  server {per_message[-1]:6.1f} µs/msg   probe {before:.3f} / {after:.3f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    if len(per_message) < 2:
        return 0  # (a spread needs two repetitions)
    middle = statistics.median(probes)
    scaled = [us * middle / p for us, p in zip(per_message, probes, strict=True)]
    try:
        correlation = f"{statistics.correlation(per_message, probes):+.2f}"
    except statistics.StatisticsError:  # one of the two did not move at all
        correlation = "undefined"
    print(f"spread: server CPU/msg {spread(per_message):.0%}, probe {spread(probes):.0%}, "
          f"server scaled by the probe {spread(scaled):.0%}; correlation {correlation}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
