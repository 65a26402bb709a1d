"""Postfix XCLIENT and XFORWARD inside the protocol core: a trusted proxy or content filter
telling the server who the real client is.

Whether a connection may use them is the driver's decision (``xclient_allowed`` /
``xforward_allowed``), taken from the peer address and the server's trust lists.
"""

from __future__ import annotations

import re
from typing import Final

from ..session import Session
from .addresses import plain_ip, xtext_decode
from .events import XClient
from .replies import ReplyWriter

__all__ = ["Forwarding", "XCLIENT_ATTRIBUTES", "XFORWARD_ATTRIBUTES"]

XCLIENT_ATTRIBUTES: Final = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
XFORWARD_ATTRIBUTES: Final = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
_SPECIAL: Final = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,255}")
_HELO: Final = re.compile(r"[\x21-\x7e]{1,255}")


class Forwarding:
    """XCLIENT/XFORWARD for one session: whether the peer may use them, and the commands."""

    __slots__ = ("_session", "_writer", "xclient_allowed", "xforward_allowed", "_xclient_used")

    def __init__(self, session: Session, writer: ReplyWriter) -> None:
        self._session = session
        self._writer = writer
        self.xclient_allowed = False  # set by the driver from its trust lists
        self.xforward_allowed = False
        self._xclient_used = False

    def extensions(self) -> list[str]:
        """The EHLO keywords to advertise."""
        ext = []
        if self.xclient_allowed and not self._xclient_used:
            ext.append("XCLIENT " + " ".join(XCLIENT_ATTRIBUTES))
        if self.xforward_allowed:
            ext.append("XFORWARD " + " ".join(XFORWARD_ATTRIBUTES))
        return ext

    def _parse_attributes(self, argument: str, allowed: tuple[str, ...]) -> dict[str, str] | None:
        """``NAME=value ...`` with xtext values, checked; None after replying 501."""
        attributes: dict[str, str] = {}
        tokens = argument.split()
        if not tokens:
            self._writer.reply(501, "Error: syntax: attribute=value ...", "5.5.4")
            return None
        for token in tokens:
            key, eq, raw = token.partition("=")
            key = key.upper()
            value = xtext_decode(raw)
            if not eq or key not in allowed or not _valid(key, value):
                self._writer.reply(501, f"Error: bad attribute {token[:40]}", "5.5.4")
                return None
            attributes[key] = value
        return attributes

    def _refused(self, allowed: bool) -> bool:
        if not allowed:
            self._writer.reply(550, "Error: insufficient authorization", "5.7.0")
            return True
        if self._session.envelope.mail_from is not None:
            self._writer.reply(503, "Error: mail transaction in progress", "5.5.1")
            return True
        return False

    def xclient(self, argument: str) -> XClient | None:
        """``XCLIENT attribute=value ...``: the session takes the new identity."""
        if self._refused(self.xclient_allowed and not self._xclient_used):
            return None
        attributes = self._parse_attributes(argument, XCLIENT_ATTRIBUTES)
        if attributes is None:
            return None
        session = self._session
        session.x_client.update(attributes)
        address = attributes.get("ADDR")
        if address is not None and address not in _SPECIAL:
            session.remote_address = _plain_ip(address)
            session.client_hostname = f"[{session.remote_address}]"
            self._xclient_used = True
        port = attributes.get("PORT")
        if port is not None and port not in _SPECIAL:
            session.remote_port = int(port)
        name = attributes.get("NAME")
        if name is not None:
            session.client_hostname = name.lower() if name not in _SPECIAL else f"[{session.remote_address}]"
        # The new client is not the proxy: the proxy's own AUTH does not carry over.
        login = attributes.get("LOGIN")
        session.user = login if login is not None and login not in _SPECIAL else None
        # As Postfix does: the session starts over with a new greeting; HELO/EHLO again.
        session.host_name_appears_as = None
        session.opening_command = None
        return XClient(attributes)

    def xforward(self, argument: str) -> None:
        """``XFORWARD attribute=value ...``: recorded for the handlers, answered 250."""
        if self._refused(self.xforward_allowed):
            return
        attributes = self._parse_attributes(argument, XFORWARD_ATTRIBUTES)
        if attributes is None:
            return
        self._session.x_forward.update(attributes)
        self._writer.reply(250, "OK", "2.0.0")


def _plain_ip(value: str) -> str:
    """An XCLIENT/XFORWARD address (``IPV6:`` prefix allowed) as sockets report it."""
    return plain_ip(value[5:] if value[:5].upper() == "IPV6:" else value)


def _valid(key: str, value: str) -> bool:
    if value in _SPECIAL:
        return key not in ("SOURCE",)
    if key in ("ADDR", "DESTADDR"):
        try:
            _plain_ip(value)
        except ValueError:
            return False
        return True
    if key in ("PORT", "DESTPORT"):
        return value.isdigit() and value.isascii() and len(value) <= 5 and int(value) <= 65535
    if key == "NAME":
        return bool(_NAME.fullmatch(value))
    if key == "PROTO":
        return value.upper() in ("SMTP", "ESMTP")
    if key == "SOURCE":
        return value.upper() in ("LOCAL", "REMOTE")
    if key in ("HELO", "LOGIN", "IDENT"):
        return bool(_HELO.fullmatch(value))
    return False
