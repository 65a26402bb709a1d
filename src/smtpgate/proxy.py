"""The PROXY protocol (HAProxy, versions 1 and 2): parsing headers and deciding trust.

Pure functions: `header_length` says how many bytes the header takes once enough
of it is known, so the server reads exactly the header and not a byte of what follows
(which may be a TLS ClientHello); `parse_proxy_header` turns it into a
`ProxyInfo`.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "ProxyError",
    "ProxyInfo",
    "V2_SIGNATURE",
    "MAX_V1_LENGTH",
    "MAX_V2_LENGTH",
    "header_length",
    "parse_proxy_header",
    "TrustList",
    "ProxySniffer",
    "Sniffed",
]

logger = logging.getLogger("smtpgate")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_V1_LENGTH = 107  # "PROXY TCP6 " + two IPv6 addresses + two ports + CRLF
MAX_V2_LENGTH = 16 + 4096  # the address block and the TLVs a load balancer sends fit easily
_V1_FAMILIES = (b"TCP4 ", b"TCP6 ", b"UNKNOWN")  # what may follow "PROXY "
_V1_SHAPE = "PROXY v1 header needs TCP4|TCP6 src dst sport dport (or UNKNOWN)"


class ProxyError(ValueError):
    """A malformed, truncated or oversized PROXY header."""


@dataclass
class ProxyInfo:
    """What the proxy said about the client. ``local`` is true for a v2 LOCAL command or
    v1 ``UNKNOWN`` (a health check from the proxy itself): keep the real peer address."""

    version: int
    local: bool = False
    source_address: str | None = None
    source_port: int | None = None
    destination_address: str | None = None
    destination_port: int | None = None
    tlvs: dict[int, bytes] = field(default_factory=dict)


def header_length(data: bytes) -> int | None:
    """The total length of the header that ``data`` starts with, or None if more bytes
    are needed to know it. Raises `ProxyError` if ``data`` cannot be a header."""
    if data.startswith(V2_SIGNATURE[: len(data)]) and len(data) < 16:
        return None
    if data.startswith(V2_SIGNATURE):
        total = 16 + int.from_bytes(data[14:16], "big")
        if total > MAX_V2_LENGTH:
            raise ProxyError(f"PROXY v2 header too long ({total} bytes)")
        return total
    if not b"PROXY "[: len(data)] == data[:6]:
        raise ProxyError("not a PROXY header")
    family = data[6:13]
    if not any(token.startswith(family) or family.startswith(token) for token in _V1_FAMILIES):
        # "PROXY BOGUS": refused as soon as it is known, not after proxy_timeout.
        raise ProxyError(_V1_SHAPE)
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyError("PROXY v1 header too long")
        return None
    if end + 2 > MAX_V1_LENGTH:
        raise ProxyError("PROXY v1 header too long")
    return end + 2


def parse_proxy_header(data: bytes) -> ProxyInfo:
    """Parse exactly one whole header (as measured by `header_length`)."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    return _parse_v1(data)


def _parse_v1(data: bytes) -> ProxyInfo:
    if not data.endswith(b"\r\n") or len(data) > MAX_V1_LENGTH:
        raise ProxyError("PROXY v1 header must end with CRLF within 107 bytes")
    try:
        text = data[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyError("PROXY v1 header is not ASCII") from None
    parts = text.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        raise ProxyError("PROXY v1 header malformed")
    if parts[1] == "UNKNOWN":
        return ProxyInfo(version=1, local=True)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError(_V1_SHAPE)
    family = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    try:
        source = family(parts[2])
        destination = family(parts[3])
    except ValueError:
        raise ProxyError("PROXY v1 header has a bad address") from None
    ports = []
    for port in parts[4:6]:
        if not port.isdigit() or not port.isascii() or (len(port) > 1 and port[0] == "0") or int(port) > 65535:
            raise ProxyError("PROXY v1 header has a bad port")
        ports.append(int(port))
    return ProxyInfo(1, False, str(source), ports[0], str(destination), ports[1])


def _parse_v2(data: bytes) -> ProxyInfo:
    if len(data) < 16:
        raise ProxyError("PROXY v2 header truncated")
    version_command, family_protocol, length = struct.unpack("!BBH", data[12:16])
    if version_command >> 4 != 2:
        raise ProxyError("PROXY v2 header has a bad version")
    if len(data) != 16 + length:
        raise ProxyError("PROXY v2 header length mismatch")
    command = version_command & 0x0F
    if command == 0x0:
        return ProxyInfo(version=2, local=True)
    if command != 0x1:
        raise ProxyError("PROXY v2 header has an unknown command")
    body = data[16:]
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if family == 0x0:  # AF_UNSPEC: keep the real peer
        return ProxyInfo(version=2, local=True, tlvs=_tlvs(body))
    if protocol not in (0x1, 0x2):
        raise ProxyError("PROXY v2 header has an unknown transport protocol")
    if family == 0x1:
        size, make = 12, ipaddress.IPv4Address
    elif family == 0x2:
        size, make = 36, ipaddress.IPv6Address  # type: ignore[assignment]
    elif family == 0x3:
        # AF_UNIX: no address to report; treat as local.
        return ProxyInfo(version=2, local=True)
    else:
        raise ProxyError("PROXY v2 header has an unknown address family")
    if len(body) < size:
        raise ProxyError("PROXY v2 address block truncated")
    half = (size - 4) // 2
    source = make(body[:half])
    destination = make(body[half : 2 * half])
    source_port, destination_port = struct.unpack("!HH", body[2 * half : size])
    return ProxyInfo(2, False, str(source), source_port, str(destination), destination_port, _tlvs(body[size:]))


def _tlvs(data: bytes) -> dict[int, bytes]:
    """Type-length-value entries; unknown types are kept raw, a truncated one is an error."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyError("PROXY v2 TLV truncated")
        kind, length = struct.unpack("!BH", data[offset : offset + 3])
        offset += 3
        if offset + length > len(data):
            raise ProxyError("PROXY v2 TLV truncated")
        found[kind] = data[offset : offset + length]
        offset += length
    return found


class Sniffed(enum.Enum):
    """What `ProxySniffer.feed` found."""

    HEADER = "header"  # a PROXY header from a peer that may not send one: close
    HOLD = "hold"  # may still become a header: wait for more bytes
    HOLD_BRIEFLY = "hold briefly"  # blank lines that may begin a v2 header: release them soon
    SMTP = "smtp"  # not a header: these bytes are SMTP


class ProxySniffer:
    """Watches the first bytes of a peer that is not trusted to send a PROXY header.

    Such a header (in one piece or several) must close the connection and never be read as
    SMTP, so bytes that may still become one are held back: a ``PROXY `` prefix until
    it is complete, and blank lines that may begin the v2 signature only for a moment
    (the driver calls `release` after `HOLD_SECONDS`), so that a lone CRLF is still
    answered. Pure: no clock, no I/O.
    """

    HOLD_SECONDS = 1.0

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> tuple[Sniffed, bytes]:
        """The verdict on what arrived so far, and (for `Sniffed.SMTP`) every byte to use."""
        probe = self._held + data
        if probe.startswith(b"PROXY ") or probe.startswith(V2_SIGNATURE):
            self._held = b""
            return Sniffed.HEADER, b""
        if len(probe) < 6 and b"PROXY ".startswith(probe):
            self._held = probe  # no complete line yet: no reply is withheld
            return Sniffed.HOLD, b""
        if len(probe) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(probe):
            first = not self._held
            self._held = probe
            return (Sniffed.HOLD_BRIEFLY if first else Sniffed.HOLD), b""
        self._held = b""
        return Sniffed.SMTP, probe

    def release(self) -> bytes:
        """The bytes held back (they did not become a header in time)."""
        held, self._held = self._held, b""
        return held


class TrustList:
    """``True`` or ``"*"`` (everyone), ``False`` (no one), addresses and CIDR networks, or
    a function of the peer's IP address (IPv4-mapped IPv6 given as IPv4) deciding per peer."""

    def __init__(self, value: bool | str | Iterable[str] | Callable[[str], bool]) -> None:
        self.everyone = value is True or value == "*"
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.decide: Callable[[str], bool] | None = None
        if isinstance(value, bool) or value == "*":
            self.enabled = bool(value)
            return
        if callable(value):
            self.decide = value
            self.enabled = True
            return
        if isinstance(value, str):
            value = [value]
        for item in value:
            if not isinstance(item, str):
                raise TypeError(f"trusted addresses must be strings, got {item!r}")
            if item == "*":
                self.everyone = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
        self.enabled = self.everyone or bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not self.enabled:
            return False
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(str(address).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.decide is not None:
            try:
                return bool(self.decide(str(ip)))
            except Exception:
                logger.exception("trust function failed for %s: not trusted", ip)
                return False
        return any(ip in network for network in self.networks)
