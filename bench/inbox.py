"""Inbox benchmark: store rate against the Maildir sink, API latency on a full inbox, and
memory for a 100 MB message.

    .venv/bin/python bench/inbox.py                 # 5,000 messages, an inbox of 10,000
    .venv/bin/python bench/inbox.py --quick         # small counts, to check it runs
    .venv/bin/python bench/inbox.py --large         # also: peak memory while storing 100 MB

1. **Store rate**: the ``smtpgate`` command runs with ``--sink maildir:DIR`` and with
   ``--sink inbox:FILE`` (alternating, ``--rounds`` times each); ``--concurrency`` asyncio
   clients send small messages (about 1 KiB, several per connection). Reported: messages
   per second of each (median of the rounds) and the inbox's share of Maildir's rate
   (the target is 70% or more).
2. **API latency**: an inbox of ``--inbox-size`` messages (stored through `InboxStore`),
   served by ``smtpgate --http``; the median and 95th percentile of ``--requests``
   requests of each kind (listing, free-text search, ``from:`` search, one mailbox,
   one message), over one keep-alive connection. The target is 50 ms median.
3. **Memory** (``--large``): the server's peak anonymous memory (RssAnon, sampled every
   10 ms) while a 100 MB message is stored, parsed and its attachment downloaded.

Loopback only; every loop is bounded by its count.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from smtpreply import read_reply  # noqa: E402

from smtpgate.inbox import InboxStore  # noqa: E402
from smtpgate.sinks import MessageInfo  # noqa: E402

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar".split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_message(number: int) -> bytes:
    word = WORDS[number % len(WORDS)]
    body = (f"Message {number} about {word}. " * 30).encode()
    return (
        (
            f"From: Sender {number % 50} <sender{number % 50}@bench.test>\r\nTo: user{number % 20}@bench.test\r\n"
            f"Subject: {word} report {number}\r\nMessage-ID: <{number}@bench.test>\r\n\r\n"
        ).encode()
        + body
        + b"\r\n"
    )


class Server:
    """The command in a subprocess, stopped with SIGTERM."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.smtp_port = free_port()
        self.log = cwd / f"server-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smtpgate", "--port", str(self.smtp_port), "--log-level", "warning", *args],
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{self.log.read_text()}") from None
                time.sleep(0.05)

    def anonymous_memory(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


async def smtp_client(port: int, numbers: list[int], per_connection: int) -> None:
    """Send the messages with plain SMTP, ``per_connection`` per session."""
    for first in range(0, len(numbers), per_connection):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        await read_reply(reader)
        writer.write(b"EHLO bench.test\r\n")
        await read_reply(reader)
        for number in numbers[first : first + per_connection]:
            writer.write(b"MAIL FROM:<a@bench.test>\r\n")
            await read_reply(reader)
            writer.write(b"RCPT TO:<b@bench.test>\r\n")
            await read_reply(reader)
            writer.write(b"DATA\r\n")
            await read_reply(reader)
            writer.write(small_message(number) + b".\r\n")
            answer = await read_reply(reader)
            if not answer.startswith(b"250"):
                raise RuntimeError(f"message refused: {answer!r}")
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
        writer.close()


def store_rate(sink: str, count: int, concurrency: int, work: Path) -> float:
    folder = Path(tempfile.mkdtemp(dir=work))
    server = Server(["--sink", sink.replace("DIR", str(folder))], folder)
    try:
        numbers = list(range(count))
        shares = [numbers[i::concurrency] for i in range(concurrency)]

        async def run() -> None:
            await asyncio.gather(*(smtp_client(server.smtp_port, share, 20) for share in shares))

        started = time.perf_counter()
        asyncio.run(run())
        return count / (time.perf_counter() - started)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def fill(path: str, count: int) -> None:
    async with InboxStore(path) as store:
        for first in range(0, count, 200):
            await asyncio.gather(
                *(
                    store.add_bytes(small_message(n), MessageInfo("a@bench.test", (f"user{n % 20}@bench.test",)))
                    for n in range(first, min(count, first + 200))
                )
            )


def latencies(port: int, path: str, requests: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        times.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    connection.close()
    return times


def api_latency(size: int, requests: int, work: Path) -> list[tuple[str, float, float]]:
    folder = Path(tempfile.mkdtemp(dir=work))
    database = folder / "inbox.sqlite3"
    started = time.perf_counter()
    asyncio.run(fill(str(database), size))
    print(f"  filled an inbox of {size} messages in {time.perf_counter() - started:.1f} s", flush=True)
    http_port = free_port()
    server = Server(["--sink", f"inbox:{database}", "--http", f"127.0.0.1:{http_port}"], folder)
    try:
        time.sleep(0.5)
        connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        connection.request("GET", "/api/v1/messages?limit=1")
        latest = json.loads(connection.getresponse().read())["messages"][0]["ID"]
        connection.close()
        kinds = [
            ("list 50 newest", "/api/v1/messages?limit=50"),
            ("search free text", "/api/v1/search?query=" + urllib.parse.quote("charlie")),
            ("search from: + is:unread", "/api/v1/search?query=" + urllib.parse.quote("from:sender7 is:unread")),
            ("one mailbox", "/api/v1/messages?mailbox=user3@bench.test"),
            ("one message", f"/api/v1/message/{latest}"),
        ]
        results = []
        for name, path in kinds:
            times = sorted(latencies(http_port, path, requests))
            results.append((name, statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000))
        return results
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def large_memory(work: Path) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(dir=work))
    http_port = free_port()
    server = Server(["--sink", "inbox:inbox.sqlite3", "--http", f"127.0.0.1:{http_port}", "--max-size", "0"], folder)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, server.anonymous_memory())

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        idle = server.anonymous_memory()
        sampler.start()
        line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
        head = (
            b"From: a@bench.test\r\nSubject: large\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=big.bin\r\n\r\n"
        )
        import smtplib

        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=600) as smtp:
            smtp.sendmail(
                "a@bench.test", ["b@bench.test"], head + line * (100 * 1024 * 1024 // len(line)) + b"--B--\r\n"
            )
        connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=600)
        connection.request("GET", "/api/v1/message/latest/part/1")
        response = connection.getresponse()
        while response.read(1 << 20):
            pass
        connection.close()
        done.set()
        sampler.join(5)
        return idle / 2**20, peak / 2**20
    finally:
        done.set()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages per store-rate round (default 5000)")
    parser.add_argument("--concurrency", type=int, default=10, help="SMTP clients at once (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per sink (default 3)")
    parser.add_argument("--inbox-size", type=int, default=10_000, help="messages in the latency inbox (default 10000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per latency kind (default 200)")
    parser.add_argument("--large", action="store_true", help="also measure memory for a 100 MB message")
    parser.add_argument("--quick", action="store_true", help="small counts: check that it runs")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.rounds, args.inbox_size, args.requests = 200, 1, 500, 20
    work = Path(tempfile.mkdtemp(prefix="smtpgate-inbox-bench-"))
    try:
        print(f"store rate: {args.messages} messages x {args.rounds} rounds, {args.concurrency} clients", flush=True)
        rates: dict[str, list[float]] = {"maildir:DIR/maildir": [], "inbox:DIR/inbox.sqlite3": []}
        for _ in range(args.rounds):
            for sink in rates:
                rates[sink].append(store_rate(sink, args.messages, args.concurrency, work))
        maildir = statistics.median(rates["maildir:DIR/maildir"])
        inbox = statistics.median(rates["inbox:DIR/inbox.sqlite3"])
        print("\n| sink | msgs/s (median) |\n|------|----------------:|")
        print(f"| maildir | {maildir:.0f} |\n| inbox | {inbox:.0f} |")
        print(f"\ninbox / maildir: {inbox / maildir:.0%} (target >= 70%)\n", flush=True)
        print(f"API latency: inbox of {args.inbox_size} messages, {args.requests} requests per kind", flush=True)
        print("\n| request | median ms | p95 ms |\n|---------|----------:|-------:|")
        for name, median, p95 in api_latency(args.inbox_size, args.requests, work):
            print(f"| {name} | {median:.1f} | {p95:.1f} |")
        if args.large:
            idle, peak = large_memory(work)
            print(f"\n100 MB message: anonymous memory {idle:.0f} MiB idle, {peak:.0f} MiB peak")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
