"""DNS blocklists (RFC 5782), postscreen style: every list is asked at once, each listing
adds its weight to a score, and a score at or over the threshold blocks the client."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .resolver import DNSTempError, Resolver

__all__ = ["Blocklist", "DNSBL", "DNSBLResult", "Listing", "parse_blocklist"]

logger = logging.getLogger("smtpgate.verify")


@dataclass(frozen=True)
class Blocklist:
    """One list: its DNS zone and the weight a listing adds to the score."""

    zone: str
    weight: float = 1.0


@dataclass(frozen=True)
class Listing:
    """The client is on ``zone``: the answer codes and the list's TXT text."""

    zone: str
    weight: float
    codes: tuple[str, ...]
    text: str = ""


@dataclass(frozen=True)
class DNSBLResult:
    """The score, the listings behind it, and whether it reached the threshold."""

    score: float
    listings: tuple[Listing, ...] = ()
    blocked: bool = False
    errors: tuple[str, ...] = ()

    def reply_text(self, ip: str) -> str:
        """The refusal text: the heaviest list and its explanation."""
        if not self.listings:
            return f"Client [{ip}] refused"
        top = max(self.listings, key=lambda listing: listing.weight)
        text = f"Service unavailable; client [{ip}] blocked using {top.zone}"
        if top.text:
            text += f"; {top.text}"
        return "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)[:400]


def parse_blocklist(spec: str) -> Blocklist:
    """``ZONE`` or ``ZONE=WEIGHT`` (weight a number, default 1)."""
    zone, sep, weight_text = spec.strip().partition("=")
    zone = zone.strip().strip(".").lower()
    if not zone or "." not in zone or any(not label for label in zone.split(".")):
        raise ValueError(f"invalid DNS blocklist zone {spec!r}")
    weight = 1.0
    if sep:
        try:
            weight = float(weight_text)
        except ValueError:
            raise ValueError(f"invalid weight in DNS blocklist {spec!r}") from None
    return Blocklist(zone, weight)


def query_name(ip: str, zone: str) -> str:
    """``4.3.2.1.zone`` for 1.2.3.4; nibbles reversed for IPv6."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        labels = str(address).split(".")
    else:
        labels = list(address.exploded.replace(":", ""))
    return ".".join(reversed(labels)) + "." + zone


class DNSBL:
    """Ask the lists about one client address.

    :param lists: `Blocklist` entries or ``"ZONE[=WEIGHT]"`` strings.
    :param threshold: the score that blocks (default 1: any list of weight 1).

    A list that cannot be asked (timeout, SERVFAIL) counts nothing and is logged; answers
    outside 127.0.0.0/8, and 127.255.255.0/24 (the lists' own error codes), are ignored.
    """

    def __init__(self, resolver: Resolver, lists: Sequence[Blocklist | str], *, threshold: float = 1.0) -> None:
        self.resolver = resolver
        self.lists = tuple(parse_blocklist(item) if isinstance(item, str) else item for item in lists)
        if threshold <= 0:
            raise ValueError("the DNSBL threshold must be greater than 0")
        self.threshold = threshold

    async def check(self, ip: str) -> DNSBLResult:
        """The client's score over every list."""
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return DNSBLResult(0.0)
        answers = await asyncio.gather(*(self._ask(ip, blocklist) for blocklist in self.lists))
        listings = tuple(answer for answer in answers if isinstance(answer, Listing))
        errors = tuple(answer for answer in answers if isinstance(answer, str))
        score = sum(listing.weight for listing in listings)
        return DNSBLResult(score, listings, score >= self.threshold, errors)

    async def _ask(self, ip: str, blocklist: Blocklist) -> Listing | str | None:
        name = query_name(ip, blocklist.zone)
        try:
            codes = [code for code in await self.resolver.a(name) if _is_listing(code)]
            if not codes:
                return None
            try:
                texts = await self.resolver.txt(name)
            except DNSTempError:
                texts = []
        except DNSTempError as error:
            logger.warning("DNS blocklist %s not asked: %s", blocklist.zone, error)
            return str(error)
        return Listing(blocklist.zone, blocklist.weight, tuple(sorted(codes)), " ".join(texts).strip())


def _is_listing(code: str) -> bool:
    try:
        address = ipaddress.IPv4Address(code)
    except ValueError:
        return False
    return address in ipaddress.IPv4Network("127.0.0.0/8") and address not in ipaddress.IPv4Network("127.255.255.0/24")
