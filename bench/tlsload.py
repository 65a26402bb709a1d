"""A small lock-step SMTP load generator with STARTTLS (smtp-source cannot do TLS).

Send mode (the "tls" scenario): every session connects, reads the greeting, sends EHLO,
STARTTLS, EHLO again, then MAIL, RCPT, DATA, the message and "." for each of
--per-session messages, waiting for every reply (no pipelining, like smtp-source -d),
then QUIT, and starts over until --messages are sent. --processes worker processes
share the sessions. Prints one JSON line: messages, errors, seconds.

    python tlsload.py 127.0.0.1:2525 --sessions 20 --messages 20000 --length 1024 --tls

Hold mode (the "idle" scenario): open --hold connections from one process, read the
greeting, EHLO (and STARTTLS + EHLO with --tls), print "HELD <n>" and keep them open
until standard input closes or SIGTERM; then close them all.

    python tlsload.py 127.0.0.1:2525 --hold 10000 [--tls]

Standard library only (uvloop is used when importable and --loop uvloop is given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
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


def build_message(length: int, sender: str, recipient: str, serial: int = 0) -> bytes:
    """Headers like smtp-source's, then `length` bytes of payload in 80-byte lines."""
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-Id: <{os.getpid()}.{serial}@bench.local>\r\n\r\n"
    ).encode()
    lines = []
    left = length
    number = 1
    while left > 0:
        text = (str(number) + "X" * 78)[: max(0, min(78, left - 2))]
        lines.append(text.encode() + b"\r\n")
        left -= len(text) + 2
        number += 1
    return head + b"".join(lines) + b".\r\n"


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


async def worker_session(args: argparse.Namespace, state: dict, message: bytes, tls) -> None:  # type: ignore[no-untyped-def]
    host, port = args.target
    mail = f"MAIL FROM:<{args.sender}>\r\n".encode()
    rcpt = f"RCPT TO:<{args.recipient}>\r\n".encode()
    while state["left"] > 0:
        batch = min(args.per_session, state["left"])
        state["left"] -= batch
        writer = None
        try:
            # A handshake that stalls is counted as an error and retried, not waited out.
            reader, writer = await asyncio.wait_for(open_session(host, port, tls, None), args.open_timeout)
            for _ in range(batch):
                writer.write(mail)
                await reply(reader, 250)
                writer.write(rcpt)
                await reply(reader, 250)
                writer.write(b"DATA\r\n")
                await reply(reader, 354)
                writer.write(message)
                await reply(reader, 250)
                state["sent"] += 1
                batch -= 1
            writer.write(b"QUIT\r\n")
            await reply(reader, 221)
        except (OSError, ReplyError, ssl.SSLError, ValueError, asyncio.TimeoutError) as error:
            state["errors"] += 1
            state["left"] += batch  # not sent: try again on a new session
            if state["errors"] <= 3:
                print(f"tlsload: {error!r}", file=sys.stderr)
            if state["errors"] > 100:
                state["left"] = 0
        finally:
            if writer is not None:
                writer.close()
                try:
                    await writer.wait_closed()
                except (OSError, ssl.SSLError):
                    pass


async def send_worker(args: argparse.Namespace, sessions: int, messages: int) -> dict:
    message = build_message(args.length, args.sender, args.recipient)
    tls = client_context() if args.tls else None
    state = {"left": messages, "sent": 0, "errors": 0}
    await asyncio.gather(*(worker_session(args, state, message, tls) for _ in range(sessions)))
    return state


def run_worker(args: argparse.Namespace, sessions: int, messages: int, queue) -> None:  # type: ignore[no-untyped-def]
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    install_loop(args.loop)
    state = asyncio.run(send_worker(args, sessions, messages))
    queue.put(state)


def install_loop(name: str) -> None:
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return
        uvloop.install()


def send(args: argparse.Namespace) -> int:
    processes = max(1, min(args.processes, args.sessions))
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = []
    start = time.monotonic()
    for index in range(processes):
        sessions = args.sessions // processes + (1 if index < args.sessions % processes else 0)
        messages = args.messages * sessions // args.sessions
        if index == processes - 1:
            messages = args.messages - sum(w[1] for w in workers)
        proc = multiprocessing.Process(target=run_worker, args=(args, sessions, messages, queue))
        proc.start()
        workers.append((proc, messages))
    results = [queue.get() for _ in workers]
    for proc, _ in workers:
        proc.join()
    seconds = time.monotonic() - start
    sent = sum(r["sent"] for r in results)
    errors = sum(r["errors"] for r in results)
    print(json.dumps({"messages": sent, "errors": errors, "seconds": round(seconds, 4)}), flush=True)
    return 0 if sent == args.messages else 1


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
    parser.add_argument("--sessions", "-s", type=int, default=20)
    parser.add_argument("--messages", "-m", type=int, default=2000)
    parser.add_argument("--per-session", type=int, default=100, help="messages per connection")
    parser.add_argument("--length", "-l", type=int, default=1024, help="payload bytes per message")
    parser.add_argument("--processes", "-p", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--sender", default="a@bench.local")
    parser.add_argument("--recipient", default="b@bench.local")
    parser.add_argument(
        "--open-timeout",
        type=float,
        default=10.0,
        help="seconds for greeting, EHLO and STARTTLS of a session before it counts as failed",
    )
    parser.add_argument("--hold", type=int, default=0, help="hold this many idle connections instead")
    parser.add_argument("--open-concurrency", type=int, default=200)
    parser.add_argument("--sources", default="", help="comma-separated local addresses to connect from")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    args.target = (host or "127.0.0.1", int(port))
    raise_nofile()
    if args.hold:
        install_loop(args.loop)
        return asyncio.run(hold(args))
    return send(args)


if __name__ == "__main__":
    sys.exit(main())
