"""Formatting SMTP replies: one or more ``ddd[- ]text`` lines, each ending in CRLF."""

from __future__ import annotations

import re

from ..errors import SMTPError, default_enhanced_code

__all__ = ["Reply", "format_reply", "error_reply"]

# Anything that could break a reply line or a terminal: C0 and C1 controls, DEL.
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class Reply:
    """A reply the core wants written: code, optional enhanced code, text lines."""

    __slots__ = ("code", "enhanced", "lines")

    def __init__(self, code: int, text: str | list[str], enhanced: str | None = None) -> None:
        self.code = code
        self.enhanced = enhanced
        self.lines = text if isinstance(text, list) else [text]

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r}, {self.enhanced!r})"


def _clean(line: str) -> str:
    return _UNSAFE.sub(" ", line) if _UNSAFE.search(line) else line


def format_reply(code: int, lines: list[str], enhanced: str | None) -> bytes:
    """Render a reply; text lines are sanitised so a handler's message cannot inject lines.

    ``enhanced`` is put in front of every line when given.
    """
    split: list[str] = []
    for line in lines:
        if "\n" in line or "\r" in line:
            split.extend(re.split(r"\r\n|\r|\n", line))
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


def error_reply(error: SMTPError) -> Reply:
    """The reply for an ``SMTPError``, with the standard enhanced code if it has none."""
    return Reply(error.code, error.message, error.enhanced or default_enhanced_code(error.code))
