"""Helpers to run the ``smtpgate`` command as a subprocess: free ports, output in files."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

from support import wait_until

STARTUP_TIMEOUT = 20.0


class Command:
    """A running ``python -m smtpgate`` with stdout and stderr captured in files."""

    def __init__(self, args: list[str], cwd: Path, port: int) -> None:
        self.args = args
        self.cwd = cwd
        self.port = port
        self.stdout_path = cwd / "stdout.txt"
        self.stderr_path = cwd / "stderr.txt"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smtpgate", *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0, stream: str = "stderr") -> None:
        def found() -> bool:
            if self.process.poll() is not None and text not in getattr(self, stream):
                raise AssertionError(f"smtpgate exited ({self.process.returncode}):\n{self.stderr}")
            return text in getattr(self, stream)

        wait_until(found, timeout, f"{text!r} on {stream}; stderr so far:\n{self.stderr}")

    def wait_listening(self, marker: str = "Ctrl-C to stop") -> Command:
        self.wait_for_output(marker, STARTUP_TIMEOUT)
        return self

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)
        else:  # reap leftovers of the process group (workers), if any
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def smtp(self, timeout: float = 10.0) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test", timeout=timeout)


def run_once(args: list[str], cwd: Path, stdin: str = "", timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (it must exit by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "smtpgate", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


MESSAGE = b"From: me@example.com\r\nTo: you@example.com\r\nSubject: hello there\r\n\r\nHi!\r\n"
