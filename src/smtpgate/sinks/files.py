"""The file sinks: a Maildir, an mbox file, a directory of ``.eml`` files, standard output.

Each is durable when `Delivery.commit` returns: the data is written and ``fsync``'d, and
so is the directory entry. Maildir and mbox files use local line endings (LF), as mail
readers expect; ``.eml`` files keep the CRLF line endings of the wire. Folders are made
(and checked writable) when the sink is made, so a sink that cannot store fails at start-up
with one line, not at the first message.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import mailbox
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO

from .base import Delivery, MessageInfo, Sink, SinkError

__all__ = ["MaildirSink", "MboxSink", "DirSink", "StdoutSink", "StagedFile", "fsync_dir", "unlink_quietly"]

_SPOOL_IN_MEMORY = 1024 * 1024  # mbox/stdout: larger messages are spooled to a temporary file
STAGE_BATCH = 256 * 1024
"""Bytes a `StagedFile` holds in memory before it writes them to its file in a thread."""
_counter = itertools.count(1)


def fsync_dir(path: str) -> None:
    """Make a directory entry (a new or renamed file) durable.

    Raises ``OSError`` when the folder cannot be opened or synced (a failing disk must not
    become a ``250``); only a file system that does not support syncing a folder at all
    (``EINVAL``, ``ENOTSUP``) is passed over."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


class StagedFile:
    """A new file, written without file I/O on the event loop.

    What `write` gets waits in memory; once ``batch`` bytes are held they go to the file
    in a thread (the first batch creates the file, exclusively). `finish`, called in a
    thread, writes the rest, fsyncs and closes. So a message that fits in one batch costs
    the loop no system call at all: on a busy disk, even creating a file can wait for the
    journal, and the loop with it (every session stalls)."""

    def __init__(self, path: str, first: bytes = b"", *, batch: int = STAGE_BATCH) -> None:
        self.path = path
        self._batch = batch
        self._parts: list[bytes] = [first] if first else []
        self._held = len(first)
        self._file: IO[bytes] | None = None
        self._created = False

    async def write(self, data: bytes) -> None:
        """Add ``data``; a full batch goes to the file (in a thread) before this returns."""
        self._parts.append(data)
        self._held += len(data)
        if self._held >= self._batch:
            await asyncio.to_thread(self._drain)

    def _drain(self) -> None:
        parts, self._parts, self._held = self._parts, [], 0
        if self._file is None:
            self._file = open(self.path, "xb")
            self._created = True
        self._file.writelines(parts)

    def finish(self) -> None:
        """(In a thread.) Write what is held, fsync, close."""
        self._drain()
        handle, self._file = self._file, None
        assert handle is not None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()

    def discard(self) -> None:
        """Forget the data and remove the file, if it was made."""
        self._parts, self._held = [], 0
        handle, self._file = self._file, None
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass
        if self._created:
            unlink_quietly(self.path)


class _ToLF:
    """CRLF to LF across chunk boundaries."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._cr:
            chunk = b"\r" + chunk
        self._cr = chunk.endswith(b"\r")
        if self._cr:
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n")

    def end(self) -> bytes:
        return b"\r" if self._cr else b""


class _Delivery(Delivery):
    """A delivery that writes synchronously (optionally CRLF to LF) and commits in a thread."""

    def __init__(self, lf: bool) -> None:
        self._lf = _ToLF() if lf else None

    async def write(self, chunk: bytes) -> None:
        if self._lf is not None:
            chunk = self._lf.feed(chunk)
        if chunk:
            await self._write(chunk)

    async def commit(self) -> str:
        if self._lf is not None:
            rest = self._lf.end()
            if rest:
                await self._write(rest)
        try:
            return await asyncio.to_thread(self._commit)
        except BaseException:
            self.abort()
            raise

    async def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _commit(self) -> str:
        """(In a thread.)"""
        raise NotImplementedError


class _FileDelivery(_Delivery):
    """Write to a temporary file (a `StagedFile`), fsync, rename into place, fsync the
    directory."""

    def __init__(self, directory: str, temp_path: str, final_path: str, lf: bool) -> None:
        super().__init__(lf)
        self._directory = directory
        self._final = final_path
        self._file: StagedFile | None = StagedFile(temp_path)

    async def _write(self, data: bytes) -> None:
        assert self._file is not None
        await self._file.write(data)

    def _commit(self) -> str:
        staged = self._file
        assert staged is not None
        staged.finish()  # on failure, commit() calls abort(), which discards the file
        os.rename(staged.path, self._final)
        self._file = None
        fsync_dir(self._directory)
        return self._final

    def abort(self) -> None:
        staged, self._file = self._file, None
        if staged is not None:
            staged.discard()


def unlink_quietly(path: str) -> None:
    """Remove a file, whatever stands in the way (for clean-up paths that must not raise)."""
    try:
        os.unlink(path)
    except OSError:
        pass


class _SpoolDelivery(_Delivery):
    """Collect the message in a spool (memory, then a temporary file), store at commit."""

    def __init__(self, store: Callable[[bytes], str]) -> None:
        super().__init__(lf=True)
        self._store = store
        self._spool: IO[bytes] | None = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)

    async def _write(self, data: bytes) -> None:
        assert self._spool is not None
        self._spool.write(data)

    def _commit(self) -> str:
        spool = self._spool
        assert spool is not None
        self._spool = None
        try:
            spool.seek(0)
            return self._store(spool.read())
        finally:
            spool.close()

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _writable_dir(path: str, spec: str) -> None:
    """Make ``path`` (and its parents) and prove a file can be created in it; `SinkError` if not."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".smtpgate-probe-")
        probe.close()
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename and error.filename != path else ""
        raise SinkError(f"sink {spec!r}: {reason}: {path}{where}") from None


def _unique_name() -> str:
    """A Maildir-style unique name: time, microseconds, process id, counter, host."""
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{host}"


class MaildirSink(Sink):
    """A Maildir (``tmp/``, ``new/``, ``cur/``); new messages go to ``new/``."""

    kind = "maildir"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._new = os.path.join(path, "new")
        self._tmp = os.path.join(path, "tmp")
        # All three folders, also when ``path`` exists already (an empty folder, say).
        for folder in (self._tmp, self._new, os.path.join(path, "cur")):
            _writable_dir(folder, self.describe())
        fsync_dir(path)

    def open(self, info: MessageInfo) -> Delivery:
        name = _unique_name()
        return _FileDelivery(self._new, os.path.join(self._tmp, name), os.path.join(self._new, name), lf=True)


class DirSink(Sink):
    """One ``.eml`` file per message (CRLF line endings, as received)."""

    kind = "dir"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        _writable_dir(path, self.describe())

    def open(self, info: MessageInfo) -> Delivery:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{os.getpid()}-{next(_counter)}-{os.urandom(3).hex()}"
        temp = os.path.join(self.path, f".{name}.tmp")
        return _FileDelivery(self.path, temp, os.path.join(self.path, name + ".eml"), lf=False)


def _from_line(sender: str) -> bytes:
    """The mbox ``From_`` line: sender (MAILER-DAEMON for bounces) and the time."""
    who = "".join("_" if ch.isspace() else ch for ch in sender) or "MAILER-DAEMON"
    return f"From {who} {time.asctime(time.gmtime())}\n".encode("utf-8", "replace")


class MboxSink(Sink):
    """An mbox file (``mboxo``: ``From`` lines in bodies become ``>From``), locked with
    ``fcntl`` and dot-lock files so several workers can share it."""

    kind = "mbox"
    lock_timeout = 10.0

    def __init__(self, path: str) -> None:
        super().__init__(path)
        directory = os.path.dirname(os.path.abspath(path))
        _writable_dir(directory, self.describe())
        existed = os.path.exists(path)
        try:
            self._box = mailbox.mbox(path, create=True)
            with open(path, "ab"):  # an mbox that exists but cannot be appended to fails now
                pass
            self._box.lock()  # fails now, not at the first message, when the file cannot be locked
            self._box.unlock()
        except OSError as error:
            raise SinkError(f"sink {self.describe()!r}: {error.strerror or error}: {path}") from None
        except mailbox.Error as error:
            raise SinkError(f"sink {self.describe()!r}: {error}") from None
        if not existed:
            fsync_dir(directory)
        self._lock = threading.Lock()

    def open(self, info: MessageInfo) -> Delivery:
        return _SpoolDelivery(lambda message: self.append(_from_line(info.sender) + message))

    def append(self, message: bytes) -> str:
        """Append one message (with its ``From_`` line) and fsync the file."""
        with self._lock:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    self._box.lock()
                    break
                except mailbox.ExternalClashError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            try:
                self._box.add(message)
                self._box.flush()  # flushes and fsyncs the file
            finally:
                self._box.unlock()
        return self.path


class StdoutSink(Sink):
    """Write each message to standard output, mbox style (a ``From_`` line, then the
    message, then a blank line)."""

    kind = "stdout"
    uses_stdout = True

    def __init__(self, path: str = "") -> None:
        super().__init__("")
        self._lock = threading.Lock()

    def open(self, info: MessageInfo) -> Delivery:
        return _SpoolDelivery(lambda message: self.emit(_from_line(info.sender), message))

    def emit(self, from_line: bytes, message: bytes) -> str:
        """Write one message and flush; returns ``"stdout"``."""
        if not message.endswith(b"\n"):
            message += b"\n"
        data = from_line + message + b"\n"
        with self._lock:
            out = sys.stdout.buffer
            out.write(data)
            out.flush()
            try:
                os.fsync(out.fileno())
            except (OSError, ValueError):  # a terminal or a pipe: flushing is all there is
                pass
        return "stdout"
