"""Asynchronous DNS for the checks: dnspython's asyncio resolver with a timeout per lookup,
a small cache, and answers that tell a temporary failure from a name with no data.

Every check asks through `Resolver`; nothing here blocks the event loop.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

__all__ = ["DNSTempError", "Resolver", "parse_nameserver"]

DEFAULT_TIMEOUT = 5.0
"""Seconds one lookup may take, retries included."""


class DNSTempError(Exception):
    """A lookup timed out or the servers failed (SERVFAIL, REFUSED, no answer at all):
    try again later. A name that does not exist is not an error (the answer is empty)."""


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPV6]:PORT`` or a bare IPv6 address → (address, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid name server {text!r}")
        port_text = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, "53"
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"name server must be an IP address, got {host!r}") from None
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"invalid port in name server {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in name server {text!r}")
    return address, port


class Resolver:
    """Lookups for SPF, DKIM, DMARC and DNS blocklists.

    :param nameservers: ``"HOST"``/``"HOST:PORT"`` strings or ``(host, port)`` pairs; the
        system's resolvers (``/etc/resolv.conf``) when None.
    :param timeout: seconds one lookup may take in all, retries and every server included
        (each server is given an equal share before the next is asked).
    :param cache_size: answers kept (honouring their TTL); 0 turns the cache off.

    Each method returns an empty list when the name does not exist or has no record of
    that type (a "void" lookup), and raises `DNSTempError` when the answer could not be
    had. A malformed name also gives an empty list.
    """

    def __init__(
        self,
        nameservers: Sequence[str | tuple[str, int]] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cache_size: int = 10_000,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        try:
            resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        except dns.resolver.NoResolverConfiguration:
            raise ValueError("no system name servers (/etc/resolv.conf): give the name servers to use") from None
        if nameservers is not None:
            servers: list[str | dns.nameserver.Nameserver] = []
            for entry in nameservers:
                host, port = parse_nameserver(entry) if isinstance(entry, str) else entry
                servers.append(dns.nameserver.Do53Nameserver(host, port))
            if not servers:
                raise ValueError("at least one name server is needed")
            resolver.nameservers = servers
        # the lifetime bounds the whole lookup; each server gets its share of it, so a
        # silent first server leaves time to ask the next
        resolver.timeout = timeout / max(len(resolver.nameservers), 1)
        resolver.lifetime = timeout
        resolver.retry_servfail = False
        if cache_size:
            resolver.cache = dns.resolver.LRUCache(cache_size)
        self.timeout = timeout
        self._resolver = resolver
        self._cache_size = cache_size
        # answers with data (or no data), by (name, type), until they expire; in front of
        # dnspython's cache, which also keeps the NXDOMAIN answers
        self._answers: dict[tuple[str, int], tuple[float, dns.resolver.Answer]] = {}
        self.lookups = 0
        """Queries asked so far (cache hits included); for statistics and tests."""

    @property
    def nameservers(self) -> list[str]:
        """The servers asked, as ``host:port`` strings."""
        out = []
        for server in self._resolver.nameservers:
            if isinstance(server, dns.nameserver.Do53Nameserver):
                out.append(f"{server.address}:{server.port}")
            else:
                out.append(str(server))
        return out

    async def _query(self, name: str | dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer | None:
        self.lookups += 1
        try:
            qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return None  # a malformed name has no records
        key = (qname.to_text().lower(), int(rdtype))
        cached = self._answers.get(key)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        try:
            answer = await self._resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.resolver.YXDOMAIN, dns.resolver.NoMetaqueries, dns.name.NameTooLong):
            return None
        except dns.resolver.LifetimeTimeout:
            raise DNSTempError(f"DNS timeout looking up {rdtype.name} {name}") from None
        except dns.resolver.NoNameservers as error:
            raise DNSTempError(f"DNS failure looking up {rdtype.name} {name}: {_first_line(error)}") from None
        except dns.exception.DNSException as error:
            raise DNSTempError(f"DNS error looking up {rdtype.name} {name}: {_first_line(error)}") from None
        if self._cache_size:
            if len(self._answers) >= self._cache_size:
                del self._answers[next(iter(self._answers))]
            self._answers[key] = (answer.expiration, answer)
        return answer

    async def txt(self, name: str) -> list[str]:
        """The TXT records of ``name``, each one's strings joined (decoded as UTF-8)."""
        answer = await self._query(name, dns.rdatatype.TXT)
        if answer is None or answer.rrset is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer.rrset]

    async def a(self, name: str) -> list[str]:
        """IPv4 addresses of ``name``."""
        return await self._addresses(name, dns.rdatatype.A)

    async def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses of ``name``."""
        return await self._addresses(name, dns.rdatatype.AAAA)

    async def _addresses(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        answer = await self._query(name, rdtype)
        if answer is None or answer.rrset is None:
            return []
        return [rdata.address for rdata in answer.rrset]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs of ``name``, exchanges without the final dot."""
        answer = await self._query(name, dns.rdatatype.MX)
        if answer is None or answer.rrset is None:
            return []
        pairs = [(rdata.preference, rdata.exchange.to_text(omit_final_dot=True)) for rdata in answer.rrset]
        return sorted(pairs)

    async def ptr(self, address: str) -> list[str]:
        """Names of an IP address (reverse lookup), without the final dot."""
        try:
            name = dns.reversename.from_address(address)
        except (dns.exception.SyntaxError, ValueError):
            return []
        answer = await self._query(name, dns.rdatatype.PTR)
        if answer is None or answer.rrset is None:
            return []
        return [rdata.target.to_text(omit_final_dot=True) for rdata in answer.rrset]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
