"""The command's App (SMTP + inbox + HTTP API) in a background thread, and mail helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from smtpgate.cli.app import App
from smtpgate.cli.config import Settings
from smtpgate.inbox.client import InboxClient


class AppThread:
    """`App` as ``smtpgate --http`` runs it, on a loop in a thread, on free ports."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        settings.setdefault("sink", f"inbox:{tmp_path / 'inbox.sqlite3'}")
        settings.setdefault("http", ("127.0.0.1", 0))
        settings.setdefault("port", 0)
        settings.setdefault("uvloop", False)
        settings.setdefault("server", {"name": "mx.test", "close_timeout": 2.0})
        self.app = App(Settings(**settings))
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="inbox-app", daemon=True)

    def start(self) -> AppThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(30)
        return self

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the app's loop (e.g. a store method) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.app.server.close()
            if self.app.http is not None:
                await self.app.http.close()
            await self.app.close_sinks()

        try:
            self.call(shutdown(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    @property
    def smtp_port(self) -> int:
        return self.app.server.port

    @property
    def url(self) -> str:
        return str(self.app.http.url)

    @property
    def store(self) -> Any:
        return self.app.inbox

    def client(self, **options: Any) -> InboxClient:
        return InboxClient(self.url, **options)

    def send(
        self, message: EmailMessage | bytes, sender: str = "from@example.test", to: list[str] | None = None
    ) -> None:
        """Send over SMTP (smtplib); returns once the server answered 250."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60) as smtp:
            if isinstance(message, EmailMessage):
                smtp.send_message(message, from_addr=sender, to_addrs=to)
            else:
                smtp.sendmail(sender, to or ["to@example.test"], message)


def make_message(
    subject: str = "Hello", to: str = "to@example.test", body: str = "Hello there", **headers: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = headers.pop("From", "Sender Name <from@example.test>")
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


class CommandProcess:
    """``python -m smtpgate ARGS`` in ``cwd`` (its own process group), stderr in a file."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.stderr_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smtpgate", *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> CommandProcess:
        deadline = time.monotonic() + timeout
        while "Ctrl-C to stop" not in self.stderr:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"smtpgate did not start:\n{self.stderr}")
            time.sleep(0.05)
        return self

    def anonymous_memory(self) -> int:
        """The process's resident anonymous memory (RssAnon: heap, not file pages) in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0

    def sample_anonymous_memory(self) -> MemorySampler:
        """Sample `anonymous_memory` every 10 ms until ``.stop()`` (returns the peak)."""
        return MemorySampler(self)

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


class MemorySampler:
    """The peak of a process's anonymous memory, sampled in a thread."""

    def __init__(self, command: CommandProcess) -> None:
        self.peak = 0
        self._command = command
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.01):
            try:
                self.peak = max(self.peak, self._command.anonymous_memory())
            except OSError:
                return

    def stop(self) -> int:
        self._done.set()
        self._thread.join(5)
        return self.peak
