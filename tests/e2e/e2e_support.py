"""Black-box harness for the integrated command: the real ``smtpgate`` started as a
subprocess (free ports, a tmp directory), a local aiohttp webhook receiver, Knot DNS for
``--verify``, and helpers that read the inbox API, the queue and the metrics."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

# Reuse the verify tests' Knot server and the delivery tests' webhook receiver.
_TESTS = Path(__file__).resolve().parent.parent
for _folder in ("verify", "delivery", "scale"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

from dnsserver import KnotServer, knotd_path, txt, zone  # noqa: E402
from redis_support import RedisProcess  # noqa: E402
from webhook_receiver import Receiver, ThreadedReceiver  # noqa: E402

from support import free_port, wait_until  # noqa: E402

__all__ = [
    "KnotServer",
    "RedisProcess",
    "Receiver",
    "ThreadedReceiver",
    "free_port",
    "knotd_path",
    "wait_until",
    "zone",
]

START_TIMEOUT = 60.0
MESSAGE = "From: alice@ok.test\r\nTo: bob@mx.test\r\nSubject: {subject}\r\n\r\nHello {subject}.\r\n"
ZONES = {
    "ok.test": f"@ TXT {txt('v=spf1 ip4:127.0.0.1 -all')}\n_dmarc TXT {txt('v=DMARC1; p=reject')}",
}


class Gate:
    """One ``smtpgate`` process with its ports and folders."""

    def __init__(self, cwd: Path, args: list[str], *, http: bool = True, metrics: bool = False) -> None:
        self.cwd = cwd
        self.args = args
        self.port = free_port()
        self.http_port = free_port() if http else 0
        self.metrics_port = free_port() if metrics else 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def queue(self) -> Path:
        return self.cwd / "queue"

    @property
    def stderr_path(self) -> Path:
        return self.cwd / f"stderr-{self.starts}.txt"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "smtpgate", "--port", str(self.port), "--name", "mx.test"]
        if self.http_port:
            command += ["--http", f"127.0.0.1:{self.http_port}"]
        if self.metrics_port:
            command += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        return command + self.args

    def start(self, timeout: float = START_TIMEOUT) -> Gate:
        self.starts += 1
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"smtpgate did not start:\n{self.stderr}")
            time.sleep(0.05)
        return self

    def ready(self) -> bool:
        """Started: the start-up line, and with --workers every worker listening."""
        text = self.stderr
        workers = re.search(r"; (\d+) workers", text)
        if workers is None:
            return "Ctrl-C to stop" in text
        return len(re.findall(r"worker \d+ listening", text)) >= int(workers.group(1))

    def restart(self) -> Gate:
        self.kill()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the whole process group (workers included) and reap it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(30)

    def terminate(self, timeout: float) -> int:
        """SIGTERM; the exit status, or an AssertionError when it outlives ``timeout``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"smtpgate did not exit within {timeout} s of SIGTERM:\n{self.stderr}") from None

    # ---------------------------------------------------------------- HTTP side

    def get(self, path: str, port: int | None = None) -> bytes:
        url = f"http://127.0.0.1:{port or self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            body: bytes = reply.read()
            return body

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def inbox(self) -> list[dict[str, Any]]:
        """Every message summary in the inbox (newest first), all pages."""
        found: list[dict[str, Any]] = []
        for _ in range(1000):
            page = self.get_json(f"/api/v1/messages?start={len(found)}&limit=200")
            found += page["messages"]
            if not page["messages"] or len(found) >= page["total"]:
                return found
        raise AssertionError("the inbox listing does not end")

    def inbox_raw(self, message_id: str) -> bytes:
        return self.get(f"/api/v1/message/{message_id}/raw")

    def metrics(self) -> dict[str, float]:
        """The samples of ``/metrics`` parsed by prometheus-client's own parser."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.get("/metrics", self.metrics_port).decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def queue_drained(self) -> bool:
        """``smtpgate queue list`` shows nothing and no message file is left: a message
        in the middle of a delivery attempt is not listed, but its file is still there."""
        return self.queue_list() == [] and not any((self.queue / "active").glob("*.msg"))

    def queue_retry(self) -> None:
        """``smtpgate queue retry``: every queued message due now."""
        done = subprocess.run(
            [sys.executable, "-m", "smtpgate", "queue", "--queue", str(self.queue), "retry"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def queue_list(self) -> list[dict[str, Any]]:
        """``smtpgate queue list --json``: one record per queued or dead message."""
        done = subprocess.run(
            [sys.executable, "-m", "smtpgate", "queue", "--queue", str(self.queue), "list", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


class SlowReceiver(Receiver):
    """A webhook receiver that takes up to ``delay`` seconds per request (random), so that
    a kill often lands while a delivery is in flight."""

    def __init__(self, delay: float) -> None:
        super().__init__(["200"])
        self.delay = delay
        self.random = random.Random()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.random.uniform(0, self.delay))
        return await super().handle(request)


class LargeReceiver(Receiver):
    """A webhook receiver that takes request bodies up to ``max_size`` bytes (aiohttp's
    default answers 413 above 1 MiB)."""

    def __init__(self, max_size: int) -> None:
        super().__init__(["200"])
        self.max_size = max_size

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> Receiver:
        app = web.Application(client_max_size=self.max_size)
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self


def large_webhook(max_size: int) -> ThreadedReceiver:
    """A `ThreadedReceiver` around a `LargeReceiver` (use as a context manager)."""
    threaded = ThreadedReceiver(["200"])
    threaded.receiver = LargeReceiver(max_size)
    return threaded


def slow_webhook(delay: float) -> ThreadedReceiver:
    """A `ThreadedReceiver` around a `SlowReceiver` (use as a context manager)."""
    threaded = ThreadedReceiver(["200"])
    threaded.receiver = SlowReceiver(delay)
    return threaded


class Consumer(Gate):
    """``smtpgate deliver ARGS``: delivery workers on a Redis stream."""

    def __init__(self, cwd: Path, args: list[str]) -> None:
        super().__init__(cwd, args, http=False)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "smtpgate", "deliver", *self.args]


def subject_of(raw: bytes) -> str:
    match = re.search(rb"^Subject: ([^\r\n]*)", raw, re.MULTILINE)
    return match.group(1).decode("utf-8", "replace") if match else ""


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def hook_url(receiver: Receiver) -> str:
    return f"http://127.0.0.1:{receiver.port}/hook"


def auth_results(raw: bytes) -> str:
    """The Authentication-Results field of a message (unfolded)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    values = message.get_all("Authentication-Results") or []
    assert len(values) == 1, values
    return " ".join(str(values[0]).split())
