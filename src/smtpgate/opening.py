"""What a new connection starts with: its session (id, addresses, the PROXY header), its
logger, and the client's reverse DNS name."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import socket
import threading
import time
from typing import Any, Final

from .compiled import mypyc_attr
from .context import ConnectionContext
from .protocol.addresses import plain_ip
from .proxy import ProxyInfo
from .session import Session

__all__ = ["new_session_id", "new_session", "ConnectionLogger", "opens_at_once", "reverse_lookup"]

_HOSTNAME = re.compile(r"(?=.{1,253}$)(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)")


REVERSE_CACHE_SECONDS = 60.0
"""How long the system resolver's answer for an address is reused (a custom ``resolver``
is asked every time)."""
REVERSE_CACHE_SIZE = 4096
"""Addresses whose answers are kept at most (the oldest go first)."""


class _RecentNames:
    """The system resolver's recent answers: mail servers connect again and again from the
    same addresses, and each lookup is a trip to a thread and through NSS."""

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()  # servers in several threads share it

    def get(self, address: str) -> str | None:
        with self._lock:
            found = self._names.get(address)
            if found is None:
                return None
            if found[1] < time.monotonic():
                del self._names[address]
                return None
            return found[0]

    def put(self, address: str, name: str) -> None:
        with self._lock:
            self._names.pop(address, None)
            while len(self._names) >= REVERSE_CACHE_SIZE:
                del self._names[next(iter(self._names))]
            self._names[address] = (name, time.monotonic() + REVERSE_CACHE_SECONDS)

    def clear(self) -> None:
        with self._lock:
            self._names.clear()


recent_names = _RecentNames()


_BASE32: Final = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648's alphabet, lower-cased


def new_session_id() -> str:
    """16 characters of base32: 80 random bits. (``base64.b32encode`` is pure Python and
    showed up once per connection in a profile; this is the same alphabet. Two halves of
    40 bits each stay machine integers in the compiled build.)"""
    raw = os.urandom(10)
    chars: list[str] = []
    for half in (int.from_bytes(raw[:5], "big"), int.from_bytes(raw[5:], "big")):
        for shift in range(35, -1, -5):
            chars.append(_BASE32[(half >> shift) & 31])
    return "".join(chars)


@mypyc_attr(native_class=False)  # compiled, it still subclasses LoggerAdapter
class ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Log records of one connection, prefixed with its id (also in ``extra``)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra.get('connection_id')}] {msg}", kwargs


def _plain_address(address: str) -> str:
    """Drop IPv4-mapped IPv6 prefixes and scope ids; normalise IPv6 (non-IP text as is)."""
    try:
        return plain_ip(address)
    except ValueError:
        return address


def new_session(peer: Any, local: Any, proxy: ProxyInfo | None) -> Session:
    """The session of a connection from ``peer`` to ``local`` (behind ``proxy``, if any)."""
    session = Session(
        id=new_session_id(),
        local_address=_plain_address(str(local[0])) if isinstance(local, tuple) else str(local),
        local_port=int(local[1]) if isinstance(local, tuple) else 0,
        remote_address=_plain_address(str(peer[0])) if isinstance(peer, tuple) else str(peer),
        remote_port=int(peer[1]) if isinstance(peer, tuple) else 0,
    )
    if proxy is not None and not proxy.local and proxy.source_address is not None:
        session.remote_address = _plain_address(proxy.source_address)
        session.remote_port = proxy.source_port or 0
    session.client_hostname = f"[{session.remote_address}]"
    session.proxy = proxy
    return session


def opens_at_once(ctx: ConnectionContext, session: Session) -> bool:
    """Whether the session has nothing to wait for before its greeting: no implicit TLS, no
    on_connect, and no reverse lookup or one whose answer the system resolver gave recently
    (then filled in here; a custom resolver is asked every time)."""
    if ctx.secure or ctx.on_connect is not None:
        return False
    if ctx.disable_reverse_lookup:
        return True
    known = _kept_name(ctx, session.remote_address)
    if known is None:
        return False
    session.client_hostname = known
    return True


def _kept_name(ctx: ConnectionContext, address: str) -> str | None:
    """The system resolver's recent answer for ``address``; None for a custom resolver."""
    return recent_names.get(address) if ctx.resolver is None else None


async def reverse_lookup(ctx: ConnectionContext, address: str, log: Any) -> str:
    """The client's validated, lower-cased reverse DNS name, or ``[address]``. The system
    resolver's answers (a name, or "no such name") are reused for ``REVERSE_CACHE_SECONDS``;
    timeouts and temporary failures are not kept."""
    known = _kept_name(ctx, address)
    if known is not None:
        return known
    if ctx.resolver is None:
        name = await _system_lookup(ctx, address)
        if name is not None:
            recent_names.put(address, name)
            return name
        return f"[{address}]"
    try:
        result = ctx.resolver(address)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, ctx.reverse_lookup_timeout)
        name = str(result or "")
    except (OSError, asyncio.TimeoutError, UnicodeError, ValueError):
        return f"[{address}]"
    except Exception as error:  # a custom resolver failing must not end the session
        log.warning("reverse lookup failed: %r", error)
        return f"[{address}]"
    return _checked(name, address)


async def _system_lookup(ctx: ConnectionContext, address: str) -> str | None:
    """getnameinfo's answer, checked; None when there is no answer to keep."""
    loop = asyncio.get_running_loop()
    try:
        info = await asyncio.wait_for(loop.getnameinfo((address, 0), socket.NI_NAMEREQD), ctx.reverse_lookup_timeout)
    except socket.gaierror as error:
        # "No such name" is an answer and kept; a resolver failing for now is not.
        return f"[{address}]" if error.errno == socket.EAI_NONAME else None
    except (asyncio.TimeoutError, OSError, UnicodeError, ValueError):
        return None
    return _checked(info[0], address)


def _checked(name: str, address: str) -> str:
    name = name.rstrip(".").lower()
    return name if _HOSTNAME.fullmatch(name) else f"[{address}]"
