"""Where a message waits while it arrives: memory up to a limit, then a file.

A small message stays in one `bytearray`; once it grows past `MEMORY_LIMIT` it moves to
a temporary file in the store's ``tmp`` folder (same file system as its final place, so
it is renamed, not copied). A large message is never held in memory.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO

from ..sinks.files import fsync_dir, unlink_quietly

__all__ = ["Spool", "MEMORY_LIMIT"]

MEMORY_LIMIT = 256 * 1024
"""Bytes kept in memory before the spool moves to a file (the store's blob limit)."""


class Spool:
    """The bytes of one message on its way in."""

    def __init__(self, directory: str, memory_limit: int = MEMORY_LIMIT) -> None:
        self.directory = directory
        self.memory_limit = memory_limit
        self.size = 0
        self.path: str | None = None
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        """Append ``data`` (moves to a file past the memory limit)."""
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._buffer += data
        if len(self._buffer) > self.memory_limit:
            descriptor, self.path = tempfile.mkstemp(dir=self.directory, suffix=".spool")
            self._file = os.fdopen(descriptor, "wb")
            self._file.write(self._buffer)
            self._buffer = bytearray()

    def take(self) -> bytes:
        """The bytes of an in-memory spool (emptying it)."""
        data = bytes(self._buffer)
        self._buffer = bytearray()
        return data

    def finish_file(self, final_path: str) -> int:
        """Make the spool file durable at ``final_path`` (fsync, rename, fsync the folder);
        returns its size."""
        handle = self._file
        assert handle is not None and self.path is not None
        self._file = None
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()
        os.rename(self.path, final_path)
        self.path = None
        fsync_dir(os.path.dirname(final_path))
        return self.size

    def discard(self) -> None:
        """Drop the message (never raises)."""
        self._buffer = bytearray()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self.path is not None:
            unlink_quietly(self.path)
            self.path = None
