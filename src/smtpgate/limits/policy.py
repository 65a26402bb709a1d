"""What is limited: the `LimitPolicy`, rates (``N/min``), client keys and trusted networks."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Rate", "LimitPolicy", "parse_rate", "client_key", "TrustedNetworks"]

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+)\s*(?:/\s*(\d+(?:\.\d+)?)?\s*([a-z]+))?\s*$")


@dataclass(frozen=True)
class Rate:
    """At most ``count`` events per ``period`` seconds (a fixed window, as Postfix's
    ``anvil`` counts); ``count`` 0 means no limit."""

    count: int
    period: float = 60.0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("a rate's count must not be negative")
        if not self.period > 0:
            raise ValueError("a rate's period must be greater than 0")

    def __str__(self) -> str:
        if self.period == 60:
            return f"{self.count}/min"
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """``N`` (per minute), ``N/min``, ``N/s``, ``N/h`` or ``N/10s``; raises ``ValueError``."""
    match = _RATE_RE.match(text.lower())
    if match is None or (match.group(3) is not None and match.group(3) not in _UNITS):
        raise ValueError(f"invalid rate {text!r} (examples: 100/min, 10/s, 5/10s)")
    count = int(match.group(1))
    unit = _UNITS[match.group(3)] if match.group(3) else 60.0
    return Rate(count, unit * float(match.group(2) or 1))


@dataclass(frozen=True)
class LimitPolicy:
    """The limits one receiver (or a fleet sharing Redis) enforces. Zero means no limit.

    Connections are counted per client key (`client_key`: the IPv4 address, the IPv6 /64
    network by default); messages and recipients both per client key and per envelope
    sender. Refusals: ``421 4.7.0`` for connections (the connection closes), ``450 4.7.1``
    for MAIL and RCPT. Clients in ``trusted`` networks are never limited.
    """

    connections: int = 0
    """Concurrent connections per client."""
    connection_rate: Rate = Rate(0)
    """New connections per client."""
    messages: Rate = Rate(0)
    """Messages (MAIL FROM accepted) per client and per sender."""
    recipients: Rate = Rate(0)
    """Recipients (RCPT TO accepted) per client and per sender."""
    trusted: tuple[str, ...] = ()
    """Networks (CIDR) or addresses exempt from every limit."""
    ipv4_prefix: int = 32
    ipv6_prefix: int = 64
    lease: float = 30.0
    """Seconds a concurrent-connection slot survives without a heartbeat from its receiver
    (Redis backend): a receiver that dies frees its slots after this long."""
    trusted_networks: TrustedNetworks = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.connections < 0:
            raise ValueError("connections must not be negative")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("prefix length out of range")
        if not self.lease > 0:
            raise ValueError("lease must be greater than 0")
        object.__setattr__(self, "trusted_networks", TrustedNetworks(self.trusted))

    @property
    def active(self) -> bool:
        """At least one limit is set."""
        return bool(self.connections or self.connection_rate.count or self.messages.count or self.recipients.count)

    def client_key(self, address: str) -> str:
        """The key a client's counters live under (see `client_key`)."""
        return client_key(address, self.ipv4_prefix, self.ipv6_prefix)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_key(address: str, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str:
    """The client's address, or its network when a prefix is shorter than the address:
    ``2001:db8::1`` → ``2001:db8::/64``. IPv4-mapped IPv6 counts as IPv4; a non-IP
    address (a UNIX socket) is its own key."""
    ip = _ip(address)
    if ip is None:
        return address or "unknown"
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    if prefix == ip.max_prefixlen:
        return str(ip)
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class TrustedNetworks:
    """Addresses and networks exempt from the limits."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = []
        for item in networks:
            try:
                self._networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"invalid trusted network {item!r}") from None

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)
