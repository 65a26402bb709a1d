"""The objects handlers see: Session, Envelope, Address."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .proxy import ProxyInfo

__all__ = ["Address", "Envelope", "Session", "TLSInfo", "TLSDetails"]


@dataclass
class Address:
    """A MAIL FROM or RCPT TO path: the address (``""`` for the null sender) and its
    ESMTP parameters, keys upper-cased, valueless keys mapped to ``True``."""

    address: str
    args: dict[str, str | bool] = field(default_factory=dict)
    dsn: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.address


@dataclass
class Envelope:
    """The current transaction: reset by RSET, HELO/EHLO, STARTTLS and after each message."""

    mail_from: Address | None = None
    rcpt_to: list[Address] = field(default_factory=list)
    body_type: str = "7bit"
    smtp_utf8: bool = False
    require_tls: bool = False
    dsn: dict[str, Any] | None = None


@dataclass
class TLSInfo:
    """What was negotiated: cipher ``name``, its IANA ``standard_name`` and ``version``."""

    name: str
    standard_name: str
    version: str


@dataclass(frozen=True)
class TLSDetails:
    """The TLS layer of a session, for handlers (``session.tls``).

    ``peer_certificate`` is the client certificate as ``ssl.SSLSocket.getpeercert()``
    gives it (a dict), when the server asked for one (``request_cert``) and the client
    sent one that the ``ca`` verified; ``peer_certificate_der`` is the certificate the
    client sent, in DER, whether or not it was verified. Both are None without one.
    """

    version: str
    cipher: str
    standard_name: str
    servername: str | None = None
    peer_certificate: dict[str, Any] | None = None
    peer_certificate_der: bytes | None = None


@dataclass(eq=False)
class Session:
    """One client connection. The same object lives for the whole connection; handlers may
    add attributes of their own (they survive RSET)."""

    id: str
    local_address: str = ""
    local_port: int = 0
    remote_address: str = ""
    remote_port: int = 0
    client_hostname: str = ""
    host_name_appears_as: str | None = None
    opening_command: str | None = None
    transmission_type: str = "SMTP"
    secure: bool = False
    servername: str | None = None
    tls_options: TLSInfo | None = None
    user: Any = None
    transaction: int = 1
    envelope: Envelope = field(default_factory=Envelope)
    x_client: dict[str, str] = field(default_factory=dict)
    x_forward: dict[str, str] = field(default_factory=dict)
    tls: TLSDetails | None = None
    proxy: ProxyInfo | None = None
