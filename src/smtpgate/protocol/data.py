"""The DATA body decoder: end-of-data detection, dot-unstuffing and the bare-LF policy.

End of data is ``CRLF . CRLF`` and nothing else (``LF . LF``, ``CR . CR``, ``LF . CRLF``
and friends are content: no SMTP smuggling). A line that starts with a dot loses that dot
(RFC 5321 section 4.5.2). Only CRLF starts a line, so unstuffing never depends on a bare
LF. The decoder works on whole buffers and keeps at most three bytes back between calls,
so its cost does not depend on the number of lines.

The only places with work to do are an LF before a dot and a bare LF (one not after a
CR). One regular-expression search finds the first of either, scanning for the literal LF
in C, so a body of ordinary lines is looked at once, in one call (``bytes.find`` for
``CRLF .`` plus counting LFs and CRLFs, the three passes this replaced, cost three times
as much per byte). After a dot-stuffed line, ``bytes.find`` goes from one line start to
the next and the output is searched once for bare LFs, so dense dot lines do not pay for
a regular-expression search each.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DataDecoder"]

# Both start with the literal LF, which the regular-expression engine scans for in a tight
# loop; a pattern that starts with the look-behind, (?<!\r)\n, tries every byte (7x slower).
_BARE_LF: Final = re.compile(rb"\n(?<!\r\n)")
# An LF followed by a dot (maybe a line start, maybe bare) or an LF not after a CR.
_LF_TO_LOOK_AT: Final = re.compile(rb"\n(?:\.|(?<!\r\n))")


class DataDecoder:
    """Decodes one DATA body. Feed it the receive buffer; it says how much it used."""

    __slots__ = ("_at_start", "bare_lf_mode", "bare_lf_seen", "byte_length", "ended")

    def __init__(self, bare_lf_mode: str = "normalize") -> None:
        self._at_start = True
        self.bare_lf_mode = bare_lf_mode
        self.bare_lf_seen = False
        self.byte_length = 0
        self.ended = False

    def decode(self, buf: bytes | bytearray) -> tuple[bytes, int]:
        """Decode as much of ``buf`` as possible.

        Returns the unstuffed content and the number of bytes of ``buf`` consumed; the
        caller removes those and calls again with more input. After the terminator,
        ``ended`` is true and the bytes after it are left unconsumed (pipelined commands).
        """
        if not buf:
            return b"", 0
        if isinstance(buf, bytearray):
            # Slices of a view are not copies: the output is copied once, by bytes(). (No
            # ``with``: compiled, its __enter__ and __exit__ are looked up on every call.)
            view = memoryview(buf)
            try:
                return self._decode(buf, view)
            finally:
                view.release()
        return self._decode(buf, buf)

    def _decode(self, buf: bytes | bytearray, data: bytes | memoryview) -> tuple[bytes, int]:
        n = len(buf)
        pos = 0
        parts: list[bytes | memoryview] = []
        if self._at_start:
            # The start of DATA counts as the start of a line.
            if n == 0 or (buf[0] == 0x2E and n < 3 and (n == 1 or buf[1] == 0x0D)):
                return b"", 0
            self._at_start = False
            if buf[0] == 0x2E:
                if buf[1] == 0x0D and buf[2] == 0x0A:
                    self.ended = True
                    return b"", 3
                pos = 1
        consumed = n
        look = _LF_TO_LOOK_AT.search
        # Scanning, one search finds the next line start or bare LF. After a bare LF only
        # line starts matter, and after a dot-stuffed line bytes.find goes faster from one
        # to the next (bare LFs are then looked for in the output, below).
        scanning = True
        bare = False  # a bare LF is in this output
        while True:
            if not scanning:
                idx = buf.find(b"\r\n.", pos)
            else:
                found = look(buf, pos)
                if found is None:
                    idx = -1
                else:
                    lf = found.start()
                    # (pos never follows a CR: it is 0 or just after a dropped dot)
                    if lf == 0 or buf[lf - 1] != 0x0D:
                        bare = True
                        scanning = False
                        continue
                    idx = lf - 1
            if idx < 0:
                end = n
                # Hold back a trailing CR or CRLF: it may begin "CRLF." in the next buffer.
                if n - pos >= 2 and buf[n - 2] == 0x0D and buf[n - 1] == 0x0A:
                    end = n - 2
                elif n - pos >= 1 and buf[n - 1] == 0x0D:
                    end = n - 1
                parts.append(data[pos:end])
                consumed = end
                break
            dot = idx + 2
            if n - dot < 3 and (n - dot == 1 or buf[dot + 1] == 0x0D):
                # "CRLF." or "CRLF.CR" at the very end: cannot decide yet.
                parts.append(data[pos:idx])
                consumed = idx
                break
            parts.append(data[pos:dot])
            if buf[dot + 1] == 0x0D and buf[dot + 2] == 0x0A:
                self.ended = True
                consumed = dot + 3
                break
            pos = dot + 1  # drop the leading dot
            scanning = False
        out = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        if not scanning and not bare:
            bare = _BARE_LF.search(out) is not None
        if bare:
            # CRLF is never split between two outputs, so a lone LF here is a bare LF.
            self.bare_lf_seen = True
            if self.bare_lf_mode == "normalize":
                out = _BARE_LF.sub(b"\r\n", out)
        self.byte_length += len(out)
        return out, consumed
