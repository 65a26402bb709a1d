"""ConnectionContext: what one connection needs from its server, and nothing more."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .protocol.config import ProtocolConfig
from .proxy import TrustList
from .registry import ConnectionRegistry

if TYPE_CHECKING:
    from .server import SMTPServer

__all__ = ["ConnectionContext"]

Handler = Callable[..., Any]


@dataclass(frozen=True)
class ConnectionContext:
    """The server as a connection sees it: options it reads, handlers, trust lists, the
    TLS context of the moment, the registry and the event emitter. Built once per server."""

    name: str
    protocol: ProtocolConfig
    socket_timeout: float
    handler_timeout: float | None
    secure: bool
    size: int
    reject_oversized: bool
    bare_lf: str
    max_clients: int
    auth_failure_delay: float
    disable_reverse_lookup: bool
    reverse_lookup_timeout: float
    resolver: Callable[[str], Any] | None
    on_connect: Handler | None
    on_secure: Handler | None
    on_auth: Handler | None
    on_mail_from: Handler | None
    on_rcpt_to: Handler | None
    on_data: Handler | None
    on_data_is_async: bool
    on_close: Handler | None
    watch_for_proxy: bool  # use_proxy is on: untrusted peers sending a header are closed
    xclient_trust: TrustList
    xforward_trust: TrustList
    registry: ConnectionRegistry[Any]
    emit: Callable[..., None]
    tls_context: Callable[[], ssl.SSLContext]

    @classmethod
    def of(cls, server: SMTPServer) -> ConnectionContext:
        """The context of ``server`` (its options are fixed once it is built)."""
        options, handlers, tls = server.options, server.handlers, server.tls
        return cls(
            name=options.name,
            protocol=server.protocol_config,
            socket_timeout=options.socket_timeout,
            handler_timeout=options.handler_timeout,
            secure=options.secure,
            size=options.size,
            reject_oversized=options.reject_oversized,
            bare_lf=options.bare_lf,
            max_clients=options.max_clients,
            auth_failure_delay=options.auth_failure_delay,
            disable_reverse_lookup=options.disable_reverse_lookup,
            reverse_lookup_timeout=options.reverse_lookup_timeout,
            resolver=options.resolver,
            on_connect=handlers.on_connect,
            on_secure=handlers.on_secure,
            on_auth=handlers.on_auth,
            on_mail_from=handlers.on_mail_from,
            on_rcpt_to=handlers.on_rcpt_to,
            on_data=handlers.on_data,
            on_data_is_async=handlers.on_data_is_async,
            on_close=handlers.on_close,
            watch_for_proxy=server.proxy_trust.enabled,
            xclient_trust=server.xclient_trust,
            xforward_trust=server.xforward_trust,
            registry=server.connections,
            emit=server.emit,
            tls_context=lambda: tls.context,
        )
