#!/usr/bin/env python3
"""Messages per second into the Redis stream (one and two receivers) against the local
directory queue (one receiver), in the same run, on 127.0.0.1.

    bench/stream.py                 # 2,000 messages of 2 KiB per case (quick)
    bench/stream.py --messages 20000 --size 10240 --clients 32
    bench/stream.py --replicas 1    # the stream with a replica and WAIT

Starts its own redis-server (AOF, fsync every second, or --fsync always) in a temporary
directory and one process per receiver (an SMTPServer whose on_data writes to the queue,
as the command does); clients keep their connection and send one message after another.
Not run by CI; needs the ``scale`` extra and redis-server. Prints one line per case and
the stream's throughput as a share of the local queue's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.05)


# ----------------------------------------------------------------------------- receiver


def receiver_main(spec: str, port: int) -> None:
    """One receiver process: SMTPServer -> queue (the command's path, minus its log line)."""
    from smtpgate import SMTPError, SMTPServer
    from smtpgate.queue.local import LocalQueue
    from smtpgate.queue.redis import RedisStreamQueue
    from smtpgate.sinks import MessageInfo

    logging.getLogger("smtpgate").setLevel(logging.ERROR)  # no warning about the generated certificate
    queue: Any = RedisStreamQueue(spec) if spec.startswith("redis") else LocalQueue(spec.partition(":")[2])

    async def on_data(stream: Any, session: Any) -> None:
        delivery = queue.open(MessageInfo.from_session(session))
        try:
            async for chunk in stream:
                await delivery.write(chunk)
            await delivery.commit()
        except Exception:
            delivery.abort()
            raise SMTPError(451, "Could not store the message", enhanced="4.3.0") from None

    async def main() -> None:
        await queue.start()
        server = SMTPServer(on_data=on_data, disable_reverse_lookup=True, name="bench.test")
        await server.listen(port, host="127.0.0.1")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close()
        await queue.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# ----------------------------------------------------------------------------- load


async def client(port: int, count: int, body: bytes, failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> int:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return int(line[:3])

    await reply()
    writer.write(b"EHLO bench.test\r\n")
    await reply()
    for _ in range(count):
        writer.write(b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
        codes = [await reply() for _ in range(3)]
        writer.write(body)
        codes.append(await reply())
        if codes != [250, 250, 354, 250]:
            failures.append(1)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def load(ports: list[int], messages: int, clients: int, size: int) -> tuple[float, int]:
    body = b"Subject: bench\r\n\r\n" + (b"x" * 78 + b"\r\n") * max(1, size // 80) + b".\r\n"
    per_client = max(1, messages // clients)
    failures: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(*(client(ports[i % len(ports)], per_client, body, failures) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return per_client * clients / elapsed, len(failures)


# ----------------------------------------------------------------------------- cases


def start_redis(folder: Path, port: int, fsync: str, replica_of: int | None = None) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench/stream.py needs redis-server (apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", fsync, "--logfile", str(folder / "log")]
    if replica_of:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    process = subprocess.Popen(args)
    wait_port(port)
    return process


def run_case(name: str, specs: list[str], args: argparse.Namespace) -> float:
    ports = [free_port() for _ in specs]
    receivers = [
        subprocess.Popen([sys.executable, __file__, "--receiver", spec, str(port)])
        for spec, port in zip(specs, ports, strict=True)
    ]
    try:
        for port in ports:
            wait_port(port)
        asyncio.run(load(ports, min(200, args.messages), args.clients, args.size))  # warm-up
        rate, failures = asyncio.run(load(ports, args.messages, args.clients, args.size))
    finally:
        for process in receivers:
            process.send_signal(signal.SIGTERM)
        for process in receivers:
            process.wait(30)
    print(f"{name:<34} {rate:9.0f} msg/s   failures {failures}", flush=True)
    return rate


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--receiver":
        receiver_main(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=2048, help="body bytes (default 2048)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--replicas", type=int, choices=(0, 1), default=0)
    parser.add_argument("--fsync", choices=("everysec", "always"), default="everysec")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smtpgate-bench-") as work:
        folder = Path(work)
        redis_port = free_port()
        servers = [start_redis(folder / "primary", redis_port, args.fsync)]
        try:
            query = "?stream=bench"
            if args.replicas:
                servers.append(start_redis(folder / "replica", free_port(), args.fsync, replica_of=redis_port))
                query += "&replicas=1"
                time.sleep(1.0)
            stream = f"redis://127.0.0.1:{redis_port}/0{query}"
            print(
                f"{args.messages} messages of ~{args.size} bytes, {args.clients} clients, {os.cpu_count()} CPUs; "
                f"Redis appendfsync {args.fsync} (the local queue fsyncs every message)"
            )
            local = run_case("local queue, 1 receiver", [f"queue:{folder / 'queue'}"], args)
            one = run_case("redis stream, 1 receiver", [stream], args)
            two = run_case("redis stream, 2 receivers", [stream, stream], args)
            print(f"stream / local queue, 1 receiver: {one / local:.0%}; 2 receivers: {two / local:.0%}")
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
