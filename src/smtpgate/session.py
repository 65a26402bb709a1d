"""The objects handlers see: Session, Envelope, Address."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .proxy import ProxyInfo

__all__ = ["Address", "Envelope", "Session", "TLSInfo"]


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
    """What was negotiated: cipher ``name``, its IANA ``standard_name`` and ``version``;
    with ``request_cert``, the client's verified certificate as ``ssl.getpeercert()``
    decodes it (``peer_certificate``: ``subject``, ``issuer``, ``serialNumber``,
    ``notAfter``, ``subjectAltName``, ...) and in DER (``peer_certificate_der``, e.g. for
    ``cryptography.x509.load_der_x509_certificate``); both ``None`` without one."""

    name: str
    standard_name: str
    version: str
    peer_certificate: dict[str, Any] | None = field(default=None, repr=False)
    peer_certificate_der: bytes | None = field(default=None, repr=False)


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
    proxy: ProxyInfo | None = None
    user: Any = None
    transaction: int = 1
    envelope: Envelope = field(default_factory=Envelope)
    x_client: dict[str, str] = field(default_factory=dict)
    x_forward: dict[str, str] = field(default_factory=dict)
    error: str | None = None
