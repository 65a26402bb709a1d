"""The core's input buffer: bytes received and not handled yet, read as lines or counts."""

from __future__ import annotations

__all__ = ["InputBuffer"]


class InputBuffer:
    """Received bytes; ``data[pos:]`` is what is left to handle.

    A chunk that arrives while nothing is pending is held as it came (``held``) and only
    copied into ``data`` when something needs it there: a lock-step client's command then
    reaches `next_line` as the very bytes object that was received, without a copy.

    Over-long command lines are never buffered whole: `drop_overlong` cuts an
    unterminated line past the limit, and the bytes up to its LF are dropped as they come
    (``discarding``); `feed` says when such a line ended, so that it can be answered.
    """

    __slots__ = ("data", "pos", "held", "eof", "discarding")

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0
        self.held: bytes | None = None  # when set, ``data[pos:]`` is empty
        self.eof = False
        self.discarding = False

    @property
    def pending(self) -> int:
        """Bytes received and not handled yet."""
        held = self.held
        if held is not None:
            return len(held)
        return len(self.data) - self.pos

    def feed(self, chunk: bytes) -> bool:
        """Add bytes; True if they ended an over-long line being dropped."""
        ended = False
        if self.discarding:
            idx = chunk.find(b"\n")
            if idx < 0:
                return False
            chunk = chunk[idx + 1 :]
            self.discarding = False
            ended = True
        if not chunk:
            return ended
        if self.held is not None:
            self.spill()
        elif self.pos == len(self.data):
            if self.pos:
                self.data.clear()
                self.pos = 0
            self.held = chunk if type(chunk) is bytes else bytes(chunk)  # (kept: immutable)
            return ended
        self.data += chunk
        return ended

    def spill(self) -> None:
        """Move a held chunk into ``data`` (for anything but a whole line at once)."""
        held = self.held
        if held is not None:
            self.held = None
            self.data += held

    def clear(self) -> None:
        """Forget everything received (STARTTLS: pipelined plaintext is dropped)."""
        self.held = None
        self.data.clear()
        self.pos = 0

    def compact(self) -> None:
        """Drop the handled bytes from the front; ``data`` then holds all that is pending."""
        if self.pos:
            del self.data[: self.pos]
            self.pos = 0
        if self.held is not None:
            self.spill()

    def next_line(self, limit: int) -> bytes | None:
        """The next line with its line end, or None if no LF was received yet (an
        unterminated line longer than ``limit`` is then cut: see `drop_overlong`)."""
        held = self.held
        if held is not None:
            if held.find(b"\n") == len(held) - 1:  # one whole line, as received
                self.held = None
                return held
            self.spill()
        data = self.data
        pos = self.pos
        size = len(data)
        if pos == size:
            return None  # (nothing pending: nothing to compact or cut either)
        idx = data.find(b"\n", pos)
        if idx < 0:
            self.compact()
            self.drop_overlong(limit)
            return None
        if idx + 1 == size:  # the last line received (the usual case): one copy
            line = bytes(data) if pos == 0 else bytes(data[pos:])
            data.clear()
            self.pos = 0
            return line
        line = bytes(data[pos : idx + 1])
        self.pos = idx + 1
        return line

    def take(self, count: int) -> bytes:
        """Up to ``count`` bytes."""
        held = self.held
        if held is not None:
            if count >= len(held):
                self.held = None
                return held
            self.spill()
        start = self.pos
        chunk = bytes(self.data[start : start + count])
        self.pos = start + len(chunk)
        if self.pos == len(self.data):
            self.data.clear()
            self.pos = 0
        return chunk

    def drop_overlong(self, limit: int) -> None:
        """Cut an unterminated line already longer than ``limit``; drop the rest as it comes."""
        held = self.held
        if held is not None:
            if len(held) <= limit:
                return  # (the usual case: a short command, held as it came)
            self.spill()
        data = self.data
        pending = len(data) - self.pos
        if pending and data[-1] == 0x0D:
            pending -= 1  # the CR of a CRLF split between two reads is not part of the line
        if pending <= limit or data.find(b"\n", self.pos) >= 0:
            return  # short enough, or a complete line is waiting (checked when it is read)
        del data[self.pos :]
        self.discarding = True
