"""``--workers N``: N forked processes listening on the same port (``SO_REUSEPORT``).

The parent builds and checks everything first (so a bad option fails once, with one
line), then forks. It forwards SIGTERM/SIGINT (as SIGTERM) and SIGHUP, re-reads the
certificate itself for workers it starts later, and restarts a worker that dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from types import FrameType

from .app import App, StartupError, new_event_loop

__all__ = ["Supervisor", "check_addresses"]

logger = logging.getLogger("smtpgate.cli")

_STARTUP_TIMEOUT = 30.0
_POLL = 0.05


def check_addresses(addresses: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Bind each address once with ``SO_REUSEPORT`` (port 0 gets a real port number);
    raises `StartupError` if one is taken or unknown."""
    resolved: list[tuple[str, int]] = []
    for host, port in addresses:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(address)
                resolved.append((host, int(sock.getsockname()[1])))
        except (OSError, UnicodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise StartupError(f"cannot listen on {host}:{port}: {reason}") from None
    return resolved


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, app: App, count: int) -> None:
        self.app = app
        self.count = count
        self.workers: dict[int, float] = {}  # pid -> start time
        self.ready = 0
        self.all_ready = False
        self.stopping = False
        self.failed = False
        self.signals: list[int] = []
        self.delay = 0.0
        self.restart_at: list[float] = []
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def spawn(self) -> None:
        """Fork one worker."""
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._worker(parent)
            except BaseException:
                logger.exception("worker failed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.workers[pid] = time.monotonic()

    def _worker(self, parent: int) -> int:
        os.close(self._ready_r)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards Ctrl-C as SIGTERM
        app = self.app
        app.reopen_sink()
        loop, _ = new_event_loop(app.settings.uvloop)
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(app.start(reuse_port=True))
            except StartupError as error:
                logger.error("worker %d cannot start: %s", os.getpid(), error)
                return 3
            os.write(self._ready_w, b"R")
            logger.info("worker %d listening", os.getpid())
            try:
                loop.run_until_complete(app.run(handle_sigint=False, parent=parent))
            except asyncio.CancelledError:
                return 1
            return 0
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def run(self) -> int:
        """Start the workers and supervise them until told to stop; the exit status."""
        for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(handled, self._on_signal)
        started = time.monotonic()
        for _ in range(self.count):
            self.spawn()
        deadline: float | None = None
        while True:
            self._count_ready()
            if not self.all_ready and self.ready >= self.count:
                self.all_ready = True
                where = ", ".join(f"{h}:{p}" for h, p in self.app.settings.addresses())
                logger.info("ready: %d workers listening on %s", self.count, where)
            if not self.all_ready and not self.stopping and time.monotonic() - started > _STARTUP_TIMEOUT:
                logger.error("workers did not start within %.0f s", _STARTUP_TIMEOUT)
                self.failed = self.stopping = True
                self._stop_all(signal.SIGKILL)
            self._reap()
            if not self.all_ready and not self.stopping and len(self.workers) < self.count:
                logger.error("a worker failed to start: stopping")
                self.failed = self.stopping = True
                self._stop_all(signal.SIGTERM)
                deadline = time.monotonic() + 10
            for signum in self._take_signals():
                if signum == signal.SIGHUP:
                    self.app.reload()
                    self._stop_all(signal.SIGHUP)
                else:
                    if not self.stopping:
                        logger.info("shutting down %d workers", len(self.workers))
                        deadline = time.monotonic() + self.app.server.options.close_timeout + 10
                    self.stopping = True
                    self._stop_all(signal.SIGTERM)
            if self.stopping:
                if not self.workers:
                    return 1 if self.failed else 0
                if deadline is not None and time.monotonic() > deadline:
                    logger.warning("workers did not stop in time: killing them")
                    self._stop_all(signal.SIGKILL)
                    deadline = None
            else:
                self._restart_due()
            time.sleep(_POLL)

    def _take_signals(self) -> list[int]:
        taken, self.signals = self.signals, []
        return taken

    def _count_ready(self) -> None:
        try:
            data = os.read(self._ready_r, 1024)
        except BlockingIOError:
            return
        self.ready += len(data)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                return
            if pid == 0:
                return
            began = self.workers.pop(pid, None)
            if began is None or self.stopping:
                continue
            lived = time.monotonic() - began
            self.delay = 0.1 if lived > 5 else min(max(self.delay * 2, 0.5), 10.0)
            how = _describe(status)
            if self.all_ready:
                logger.warning("worker %d %s; restarting it in %.1f s", pid, how, self.delay)
                self.restart_at.append(time.monotonic() + self.delay)
            else:
                logger.error("worker %d %s during start-up", pid, how)

    def _restart_due(self) -> None:
        now = time.monotonic()
        due = [at for at in self.restart_at if at <= now]
        self.restart_at = [at for at in self.restart_at if at > now]
        for _ in due:
            self.spawn()

    def _stop_all(self, signum: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
