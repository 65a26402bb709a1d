"""SMTP replies: rendering ``ddd[- ]text`` lines, and the writer the core's parts share."""

from __future__ import annotations

import functools
import re
from typing import Final

from ..errors import default_enhanced_code

__all__ = ["format_reply", "ReplyWriter", "SIZE_EXCEEDED_CODE", "size_exceeded_text"]

# Anything that could break a reply line or a terminal: C0 and C1 controls, DEL.
_UNSAFE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")

SIZE_EXCEEDED_CODE: Final = "5.3.4"
"""The enhanced code of every 552 about the message size (RFC 3463: message too big)."""


def size_exceeded_text(size: int) -> str:
    """The text of the 552 for a message (or a declared SIZE) over the ``size`` option."""
    return f"Error: message exceeds fixed maximum message size {size}"


def _clean(line: str) -> str:
    return _UNSAFE.sub(" ", line) if _UNSAFE.search(line) else line


def format_reply(code: int, lines: list[str], enhanced: str | None) -> bytes:
    """Render a reply; text lines are sanitised so a handler's message cannot inject lines.

    ``enhanced`` is put in front of every line when given.
    """
    split: list[str] = []
    for line in lines:
        if "\n" in line or "\r" in line:
            split.extend(_LINE_BREAK.split(line))
        else:
            split.append(line)
    if not split:
        split = [""]
    last = len(split) - 1
    out = []
    for i, line in enumerate(split):
        sep = " " if i == last else "-"
        text = _clean(line)
        body = f"{enhanced} {text}" if enhanced and text else (enhanced or text)
        out.append(f"{code}{sep}{body}\r\n")
    return "".join(out).encode("utf-8")


@functools.lru_cache(maxsize=512)
def _rendered(code: int, text: str, enhanced: str | None) -> bytes:
    """One-line replies, rendered once: most are the same few texts."""
    return format_reply(code, [text], enhanced)


class ReplyWriter:
    """Replies written and not sent yet, and whether enhanced codes are in use."""

    __slots__ = ("out", "use_enhanced")

    def __init__(self, use_enhanced: bool) -> None:
        self.out: list[bytes] = []
        self.use_enhanced = use_enhanced

    def enhanced(self, code: int, enhanced: str | None) -> str | None:
        """The enhanced code to send with ``code``: the given one, else the standard one."""
        if not self.use_enhanced:
            return None
        return enhanced or default_enhanced_code(code)

    def reply(self, code: int, text: str, enhanced: str | None = None) -> None:
        """A one-line reply (the standard enhanced code added when none is given)."""
        self.out.append(_rendered(code, text, self.enhanced(code, enhanced)))

    def lines(self, code: int, lines: list[str]) -> None:
        """A reply whose text is given as is (greetings, EHLO, challenges)."""
        self.out.append(format_reply(code, lines, None))

    def with_code(self, enhanced: str, text: str) -> str:
        """``text`` preceded by ``enhanced`` when enhanced codes are in use."""
        return f"{enhanced} {text}" if self.use_enhanced else text

    def take(self) -> bytes:
        """Everything written since the last call."""
        out = self.out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        return data
