"""The delivery queue's benchmark: accepted messages per second with the queue against the
Maildir sink (same run, same load), deliveries per second to a local webhook receiver,
and the server's memory with many messages queued.

    .venv/bin/python bench/queue_bench.py                      # defaults: 2,000 messages, 10,000 queued
    .venv/bin/python bench/queue_bench.py --messages 300 --deliveries 300 --queued 1000   # a quick look

Everything runs on 127.0.0.1 in a temporary directory; every process is stopped at the
end. Needs the ``deliver`` extra (aiohttp). Not run by CI; no timing assertion anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smtpreply import read_reply

BODY = (
    b"From: bench@example.org\r\nTo: app@example.test\r\nSubject: queue benchmark\r\n\r\n" + b"x" * 76 + b"\r\n"
) * 20  # about 2 KiB

RECEIVER = r"""
import sys
from aiohttp import web
count = 0
async def hook(request):
    global count
    await request.read()
    count += 1
    return web.Response(status=204)
async def total(request):
    return web.Response(text=str(count))
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/count", total)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, handle_signals=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def spawn(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _session(port: int, count: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    accepted = 0
    try:
        await read_reply(reader)
        writer.write(b"EHLO bench.test\r\n")
        await read_reply(reader)
        for _ in range(count):
            writer.write(b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<app@example.test>\r\nDATA\r\n")
            await read_reply(reader)
            await read_reply(reader)
            if not (await read_reply(reader)).startswith(b"354"):
                continue
            writer.write(BODY + b".\r\n")
            if (await read_reply(reader)).startswith(b"250"):
                accepted += 1
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
    finally:
        writer.close()
    return accepted


async def send(port: int, messages: int, connections: int) -> tuple[int, float]:
    """Send ``messages`` over ``connections`` sessions; (accepted, seconds)."""
    per = [messages // connections + (1 if i < messages % connections else 0) for i in range(connections)]
    started = time.perf_counter()
    results = await asyncio.gather(*(_session(port, n) for n in per if n))
    return sum(results), time.perf_counter() - started


def serve(work: Path, name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = spawn(
        [sys.executable, "-m", "smtpgate", "--port", str(port), "--log-level", "warning", *args],
        work / f"{name}.log",
        work,
    )
    wait_port(port)
    return process, port


def accept_rate(
    work: Path, messages: int, connections: int, receiver_port: int, receiver_pid: int, reps: int
) -> dict[str, float]:
    """Messages per second accepted with the Maildir sink and with the queue, and CPU µs
    per message of the server (and of the webhook receiver): the median of ``reps`` runs
    of each, taken in turns so that a busy moment hurts both alike."""
    runs: dict[str, list[float]] = {}
    for rep in range(reps):
        for name, rate in _accept_once(work / f"rep{rep}", messages, connections, receiver_port, receiver_pid).items():
            runs.setdefault(name, []).append(rate)
    return {name: statistics.median(values) for name, values in runs.items()}


def _accept_once(
    work: Path, messages: int, connections: int, receiver_port: int, receiver_pid: int
) -> dict[str, float]:
    work.mkdir()
    rates: dict[str, float] = {}
    setups = {
        "maildir": ["--sink", f"maildir:{work / 'maildir'}"],
        "queue": ["--deliver", f"http://127.0.0.1:{receiver_port}/hook", "--queue", str(work / "queue-accept")],
        # an endpoint that is down: each message gets one failed attempt (its state file
        # written and fsynced), then waits an hour
        "queue_only": [
            "--deliver",
            f"http://127.0.0.1:{free_port()}/down",
            "--queue",
            str(work / "queue-only"),
            "--retry-min",
            "3600",
        ],
    }
    for name, args in setups.items():
        process, port = serve(work, name, args)
        try:
            asyncio.run(send(port, min(messages, 50), connections))  # warm-up
            time.sleep(0.5)  # the warm-up's deliveries
            cpu, hook_cpu = cpu_seconds(process.pid), cpu_seconds(receiver_pid)
            accepted, seconds = asyncio.run(send(port, messages, connections))
            if name == "queue":  # the deliveries of this run, before the CPU is read
                deadline = time.monotonic() + 60
                while list((work / "queue-accept" / "active").glob("*.msg")) and time.monotonic() < deadline:
                    time.sleep(0.05)
            cpu, hook_cpu = cpu_seconds(process.pid) - cpu, cpu_seconds(receiver_pid) - hook_cpu
        finally:
            stop(process)
        rates[name] = accepted / seconds
        rates[f"{name}_cpu_us"] = cpu * 1e6 / max(accepted, 1)
        if name == "queue":
            rates["receiver_cpu_us"] = hook_cpu * 1e6 / max(accepted, 1)
    return rates


def delivery_rate(work: Path, deliveries: int, receiver_port: int) -> float:
    """Deliveries per second from a queue filled beforehand to the webhook receiver."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from smtpgate.queue.local import LocalQueue
    from smtpgate.sinks import MessageInfo

    async def fill() -> None:
        queue = LocalQueue(str(work / "queue-deliver"), max_messages=deliveries + 10)
        await queue.start()
        for _ in range(deliveries):
            delivery = queue.open(MessageInfo(sender="bench@example.org", recipients=("app@example.test",)))
            await delivery.write(BODY)
            await delivery.commit()

    asyncio.run(fill())
    before = _received(receiver_port)
    process, _ = serve(
        work,
        "deliver",
        [
            "--sink",
            f"maildir:{work / 'unused'}",
            "--deliver",
            f"http://127.0.0.1:{receiver_port}/hook",
            "--queue",
            str(work / "queue-deliver"),
        ],
    )
    started = time.perf_counter()
    try:
        deadline = time.monotonic() + 600
        while _received(receiver_port) - before < deliveries and time.monotonic() < deadline:
            time.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        stop(process)
    return (_received(receiver_port) - before) / seconds


def _received(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /count HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.split(b"\r\n\r\n", 1)[1])


def queued_memory(work: Path, queued: int, connections: int) -> dict[str, float]:
    """The server's RSS before and after ``queued`` messages wait in its queue (the
    endpoint refuses connections, so they all stay)."""
    process, port = serve(
        work,
        "memory",
        [
            "--deliver",
            f"http://127.0.0.1:{free_port()}/nobody",
            "--queue",
            str(work / "queue-memory"),
            "--queue-max-messages",
            str(queued + 10),
            "--retry-min",
            "3600",
            "--no-uvloop",
        ],
    )
    try:
        time.sleep(0.5)
        before = rss_kib(process.pid)
        accepted, _ = asyncio.run(send(port, queued, connections))
        time.sleep(2.0)  # let the first (failing) attempts finish
        after = rss_kib(process.pid)
    finally:
        stop(process)
    return {"queued": accepted, "rss_before_mib": before / 1024, "rss_after_mib": after / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000, help="messages sent per accept run (default 2000)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent SMTP sessions (default 8)")
    parser.add_argument("--deliveries", type=int, default=2000, help="messages delivered to the receiver")
    parser.add_argument("--queued", type=int, default=10000, help="messages left queued for the memory figure")
    parser.add_argument("--reps", type=int, default=3, help="runs of each accept measurement (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smtpgate-bench-queue-") as folder:
        work = Path(folder)
        receiver_port = free_port()
        receiver = spawn([sys.executable, "-c", RECEIVER, str(receiver_port)], work / "receiver.log", work)
        try:
            wait_port(receiver_port)
            rates = accept_rate(work, args.messages, args.connections, receiver_port, receiver.pid, args.reps)
            deliveries = delivery_rate(work, args.deliveries, receiver_port)
            memory = queued_memory(work, args.queued, args.connections)
        finally:
            stop(receiver)
    figures = {
        "accepted_per_s_maildir": round(rates["maildir"], 1),
        "accepted_per_s_queue": round(rates["queue"], 1),
        "queue_vs_maildir": round(rates["queue"] / rates["maildir"], 3),
        "accepted_per_s_queue_only": round(rates["queue_only"], 1),
        "server_cpu_us_per_msg_maildir": round(rates["maildir_cpu_us"], 1),
        "server_cpu_us_per_msg_queue": round(rates["queue_cpu_us"], 1),
        "server_cpu_us_per_msg_queue_only": round(rates["queue_only_cpu_us"], 1),
        "receiver_cpu_us_per_msg": round(rates["receiver_cpu_us"], 1),
        "deliveries_per_s_webhook": round(deliveries, 1),
        **{key: round(value, 1) for key, value in memory.items()},
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
