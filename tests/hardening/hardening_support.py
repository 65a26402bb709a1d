"""Helpers for the hardening tests: a recording handler set, bounded waits, server internals
read without touching them, RSS and fd counts of this process."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import threading
from collections import Counter
from typing import Any

from raw_client import RawClient
from smtpgate import ServerThread
from smtpgate.stream import DataStreamError

MESSAGE_ID = re.compile(rb"X-Test-Id: (\S+)")


def open_sessions(running: ServerThread) -> int:
    """Connections the server still tracks (live, or finishing their on_close)."""
    return len(running.server.connections.everyone())


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Recorder:
    """Handlers that remember what they saw, safe to read from the test thread.

    ``complete`` holds the X-Test-Id of every message whose stream ended normally;
    ``broken`` counts streams that raised (the client went away mid-message).
    """

    def __init__(self, *, keep_bodies: bool = False) -> None:
        self.lock = threading.Lock()
        self.connects: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.complete: list[bytes] = []
        self.bodies: list[bytes] = []
        self.broken = 0
        self.keep_bodies = keep_bodies

    async def on_connect(self, session: Any) -> None:
        with self.lock:
            self.connects[session.id] += 1

    async def on_close(self, session: Any) -> None:
        with self.lock:
            self.closes[session.id] += 1

    async def on_data(self, stream: Any, session: Any) -> str:
        try:
            body = await stream.read()
        except DataStreamError:
            with self.lock:
                self.broken += 1
            raise
        match = MESSAGE_ID.search(body)
        with self.lock:
            self.complete.append(match.group(1) if match else b"?")
            if self.keep_bodies:
                self.bodies.append(body)
        return "stored"

    def handlers(self) -> dict[str, Any]:
        return {"on_connect": self.on_connect, "on_close": self.on_close, "on_data": self.on_data}

    def balanced(self) -> bool:
        with self.lock:
            return self.connects == self.closes


class Client(RawClient):
    """A blocking SMTP client on 127.0.0.1 whose replies stay bytes (code and text of
    every line), with both ways of hanging up."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        super().__init__("127.0.0.1", port, timeout)

    def reply(self) -> tuple[int, bytes]:  # type: ignore[override]
        lines = []
        while True:
            line = self.read_line()
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def command(self, data: bytes) -> tuple[int, bytes]:  # type: ignore[override]
        self.send(data)
        return self.reply()

    def hang_up(self, reset: bool = False) -> None:
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def closed_by_server(self, timeout: float) -> bool:
        return self.is_closed(timeout)


def client_hello() -> bytes:
    """The first flight of a TLS client (a ClientHello), made without a network."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="mx.test")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def hang_forever() -> None:
    await asyncio.sleep(3600)
