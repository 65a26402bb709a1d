"""A multi-host layout on loopback: HAProxy in front of the receivers (PROXY v2) and of
Redis (routing to whichever server says role:master), a webhook that records deliveries,
and SMTP clients that keep count of what was acknowledged."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scale.md"


def haproxy_config(smtp_port: int, receivers: list[int], redis_port: int, redis_servers: list[int]) -> str:
    """The HAProxy configuration of docs/scale.md, its addresses replaced by loopback ports."""
    text = DOCS.read_text()
    config = re.search(r"```haproxy\n(.*?)```", text, re.S)
    assert config is not None, "docs/scale.md lost its haproxy block"
    mapping = {
        "10.0.0.10:25": smtp_port,
        "10.0.0.11:2525": receivers[0],
        "10.0.0.12:2525": receivers[1],
        "10.0.0.10:6379": redis_port,
        "10.0.0.31:6379": redis_servers[0],
        "10.0.0.32:6379": redis_servers[1],
    }
    result = config.group(1)
    for address, port in mapping.items():
        assert address in result, address
        result = result.replace(address, f"127.0.0.1:{port}")
    assert "10.0.0." not in result
    return result


class HAProxyProcess:
    def __init__(self, folder: Path, config: str, ports: list[int]) -> None:
        self.path = folder / "haproxy.cfg"
        self.path.write_text(config)
        self.log = folder / "haproxy.log"
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxyProcess:
        binary = shutil.which("haproxy")
        assert binary is not None, "haproxy is not installed"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([binary, "-f", str(self.path), "-db"], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        for port in self.ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, self.log.read_text()
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


class Webhook:
    """An HTTP endpoint in a thread: records every request (``webhook-id``, the test's
    token) as it arrives, answers 200 after ``delay`` seconds; ``/hook/hold`` keeps the
    first request it gets unanswered (its consumer is killed meanwhile)."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.received: list[tuple[str, str, str]] = []  # (path, webhook-id, token)
        self.held = threading.Event()
        self._holding = False
        self._lock = threading.Lock()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Any = None
        self._release: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        match = re.search(rb"X-Token: (\S+)", body)
        token = match.group(1).decode() if match else ""
        with self._lock:
            self.received.append((request.path, request.headers.get("webhook-id", ""), token))
            hold = request.path.endswith("/hold") and not self._holding
            if hold:
                self._holding = True
        if hold:
            self.held.set()
            assert self._release is not None
            await self._release.wait()  # until the test ends (or the consumer dies)
        await asyncio.sleep(self.delay)
        return web.Response(text="ok")

    async def _start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        assert self._release is not None
        self._release.set()
        await self._runner.cleanup()

    def start(self) -> Webhook:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def tokens(self) -> dict[str, set[str]]:
        """token -> the webhook IDs it arrived with."""
        found: dict[str, set[str]] = {}
        with self._lock:
            for _, message_id, token in self.received:
                found.setdefault(token, set()).add(message_id)
        return found

    def count(self, token: str) -> int:
        with self._lock:
            return sum(1 for _, _, t in self.received if t == token)


class Outcomes:
    """What the SMTP clients saw, per token: ``acked`` (250 after DATA), ``refused`` (a
    4xx/5xx reply to MAIL, RCPT or DATA: the server said it did not take the message),
    ``unsent`` (the connection failed before the final dot was written) or ``unknown``
    (the connection failed after it: the client cannot know)."""

    def __init__(self) -> None:
        self.by_token: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, token: str, outcome: str) -> None:
        with self._lock:
            self.by_token[token] = outcome

    def tokens(self, outcome: str) -> set[str]:
        with self._lock:
            return {t for t, o in self.by_token.items() if o == outcome}


def _reply(sock: socket.socket, buffer: bytearray) -> int:
    while True:
        end = buffer.find(b"\r\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if len(line) >= 4 and line[3:4] == b"-":
                continue
            return int(line[:3])
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk


def send_one(port: int, token: str, outcomes: Outcomes, size: int = 2000) -> None:
    """One message with ``X-Token: token``, its outcome recorded."""
    dot_sent = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            buffer = bytearray()
            steps = [None, b"EHLO client.test\r\n", b"MAIL FROM:<load@x.test>\r\n", b"RCPT TO:<box@y.test>\r\n"]
            for command in steps:
                if command is not None:
                    sock.sendall(command)
                code = _reply(sock, buffer)
                if code >= 400:
                    outcomes.record(token, "refused")
                    return
            sock.sendall(b"DATA\r\n")
            if _reply(sock, buffer) != 354:
                outcomes.record(token, "refused")
                return
            body = f"Subject: load\r\nX-Token: {token}\r\n\r\n".encode() + b"z" * size + b"\r\n.\r\n"
            sock.sendall(body)
            dot_sent = True
            code = _reply(sock, buffer)
            outcomes.record(token, "acked" if code == 250 else "refused")
            try:
                sock.sendall(b"QUIT\r\n")
            except OSError:
                pass
    except OSError:
        outcomes.record(token, "unknown" if dot_sent else "unsent")


class Load:
    """``clients`` threads sending one message after another until `stop`."""

    def __init__(self, port: int, outcomes: Outcomes, clients: int = 4) -> None:
        self.port = port
        self.outcomes = outcomes
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, number: int) -> None:
        for sequence in range(100_000):
            if self._stop.is_set():
                return
            token = f"c{number}-{sequence}"
            send_one(self.port, token, self.outcomes)
            if self.outcomes.by_token.get(token) != "acked":
                time.sleep(0.1)  # refused: do not spin

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
