"""Postfix XCLIENT and XFORWARD inside the protocol core: a trusted proxy or content filter
telling the server who the real client is.

Mixed into `smtpgate.protocol.core.ServerProtocol`. Whether a connection may use
them is the driver's decision (``xclient_allowed`` / ``xforward_allowed``), taken from
the peer address and the server's trust lists.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..session import Session
from .addresses import plain_ip, xtext_decode
from .events import Event, XClient

if TYPE_CHECKING:
    from .core import ProtocolConfig

__all__ = ["ForwardingCommands", "XCLIENT_ATTRIBUTES", "XFORWARD_ATTRIBUTES"]

XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
_SPECIAL = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
_HELO = re.compile(r"[\x21-\x7e]{1,255}")


class ForwardingCommands:
    """XCLIENT/XFORWARD handling; expects the attributes and helpers of ServerProtocol."""

    config: ProtocolConfig
    session: Session
    xclient_allowed: bool
    xforward_allowed: bool
    _xclient_used: bool

    if TYPE_CHECKING:

        def _reply(self, code: int, text: str, enhanced: str | None = None) -> None: ...

    def _forwarding_extensions(self) -> list[str]:
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
            self._reply(501, "Error: syntax: attribute=value ...", "5.5.4")
            return None
        for token in tokens:
            key, eq, raw = token.partition("=")
            key = key.upper()
            value = xtext_decode(raw)
            if not eq or key not in allowed or not _valid(key, value):
                self._reply(501, f"Error: bad attribute {token[:40]}", "5.5.4")
                return None
            attributes[key] = value
        return attributes

    def _forwarding_refusal(self, allowed: bool) -> bool:
        if not allowed:
            self._reply(550, "Error: insufficient authorization", "5.7.0")
            return True
        if self.session.envelope.mail_from is not None:
            self._reply(503, "Error: mail transaction in progress", "5.5.1")
            return True
        return False

    def _cmd_xclient(self, verb: str, argument: str) -> Event | None:
        if self._forwarding_refusal(self.xclient_allowed and not self._xclient_used):
            return None
        attributes = self._parse_attributes(argument, XCLIENT_ATTRIBUTES)
        if attributes is None:
            return None
        session = self.session
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

    def _cmd_xforward(self, verb: str, argument: str) -> Event | None:
        if self._forwarding_refusal(self.xforward_allowed):
            return None
        attributes = self._parse_attributes(argument, XFORWARD_ATTRIBUTES)
        if attributes is None:
            return None
        self.session.x_forward.update(attributes)
        self._reply(250, "OK", "2.0.0")
        return None


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
