"""SMTPError: how handlers refuse, and the enhanced status codes the server adds."""

from __future__ import annotations

import re

__all__ = ["SMTPError", "default_enhanced_code"]

_ENHANCED_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")

# RFC 3463 codes for reply codes that have one obvious meaning (as smtp-server does).
_BY_CODE: dict[int, str] = {
    211: "2.0.0",
    214: "2.0.0",
    220: "2.0.0",
    221: "2.0.0",
    235: "2.7.0",
    250: "2.0.0",
    251: "2.1.5",
    252: "2.1.5",
    421: "4.4.2",
    450: "4.2.1",
    451: "4.3.0",
    452: "4.2.2",
    454: "4.7.0",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    521: "5.3.2",
    523: "5.3.4",
    530: "5.7.0",
    534: "5.7.9",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.1.1",
    551: "5.1.6",
    552: "5.2.2",
    553: "5.1.3",
    554: "5.6.0",
    555: "5.5.4",
}


def default_enhanced_code(code: int) -> str | None:
    """The RFC 3463 code that goes with a reply code, or ``None`` for 1xx/3xx."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    klass = code // 100
    if klass in (2, 4, 5):
        return f"{klass}.0.0"
    return None


class SMTPError(Exception):
    """Raise from a handler to refuse with an SMTP reply.

    ``SMTPError(550, "No such user")`` is answered ``550 5.1.1 No such user``: an enhanced
    status code is added when the reply code has a standard one and the message does not
    start with one already. Pass ``enhanced="5.7.1"`` to choose it yourself.
    """

    def __init__(self, code: int, message: str = "", *, enhanced: str | None = None) -> None:
        if not isinstance(code, int) or not 400 <= code <= 599:
            raise ValueError(f"SMTPError code must be an int from 400 to 599, got {code!r}")
        match = _ENHANCED_RE.match(message)
        if match and enhanced is None:
            enhanced = f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
            message = message[match.end() :]
        if enhanced is not None:
            if not _ENHANCED_RE.match(enhanced) or enhanced[0] != str(code)[0]:
                raise ValueError(f"enhanced status code {enhanced!r} does not match reply code {code}")
        self.code = code
        self.message = message or "Error"
        self.enhanced = enhanced
        super().__init__(code, self.message)

    def __str__(self) -> str:
        if self.enhanced:
            return f"{self.code} {self.enhanced} {self.message}"
        return f"{self.code} {self.message}"

    def __repr__(self) -> str:
        return f"SMTPError({self.code!r}, {self.message!r}, enhanced={self.enhanced!r})"
