"""Hold idle SMTP connections open, to measure a server's memory per connection.

Opens --hold connections from one process, reads the greeting, sends EHLO (and STARTTLS +
EHLO with --tls), prints "HELD <n> failed=<f> seconds=<s>" and keeps them open until
standard input closes or SIGTERM; then closes them all. (Sending load is tlsload.c's job.)

    python holdload.py 127.0.0.1:2525 --hold 10000 [--tls]

Standard library only (uvloop is used when importable and --loop uvloop is given).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import socket
import ssl
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ReplyError(Exception):
    pass


async def reply(reader: asyncio.StreamReader, expect: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        if line[3:4] != b"-":
            break
    code = int(line[:3])
    if code != expect:
        raise ReplyError(f"expected {expect}, got {line.decode(errors='replace').strip()}")


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def open_session(host: str, port: int, tls: ssl.SSLContext | None, source: str | None):  # type: ignore[no-untyped-def]
    if source:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    await reply(reader, 220)
    writer.write(b"EHLO client.bench.local\r\n")
    await reply(reader, 250)
    if tls is not None:
        writer.write(b"STARTTLS\r\n")
        await reply(reader, 220)
        await writer.start_tls(tls, server_hostname="bench.local")
        writer.write(b"EHLO client.bench.local\r\n")
        await reply(reader, 250)
    return reader, writer


def install_loop(name: str) -> None:
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return
        uvloop.install()


async def hold(args: argparse.Namespace) -> int:
    host, port = args.target
    tls = client_context() if args.tls else None
    limit = asyncio.Semaphore(args.open_concurrency)
    sources = [s for s in args.sources.split(",") if s] if args.sources else []
    writers: list[asyncio.StreamWriter] = []
    failures = 0

    async def one(index: int) -> None:
        nonlocal failures
        async with limit:
            try:
                source = sources[index % len(sources)] if sources else None
                _, writer = await asyncio.wait_for(open_session(host, port, tls, source), args.open_timeout)
                writers.append(writer)
            except (OSError, ReplyError, ssl.SSLError, asyncio.TimeoutError) as error:
                failures += 1
                if failures <= 3:
                    print(f"tlsload: {error!r}", file=sys.stderr)

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.hold)))
    print(
        f"HELD {len(writers)} failed={failures} seconds={time.monotonic() - start:.2f}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_reader(sys.stdin.fileno(), done.set)  # stdin closes (or says anything): stop
    await done.wait()
    for writer in writers:
        writer.transport.abort()
    return 0 if failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="host:port")
    parser.add_argument("--tls", action="store_true", help="EHLO, STARTTLS, EHLO at the start of each session")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=10.0,
        help="seconds for greeting, EHLO and STARTTLS of a session before it counts as failed",
    )
    parser.add_argument("--hold", type=int, required=True, help="how many idle connections to hold")
    parser.add_argument("--open-concurrency", type=int, default=200)
    parser.add_argument("--sources", default="", help="comma-separated local addresses to connect from")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    args.target = (host or "127.0.0.1", int(port))
    raise_nofile()
    install_loop(args.loop)
    return asyncio.run(hold(args))


if __name__ == "__main__":
    sys.exit(main())
