"""SPF (RFC 7208): ``check_host()`` evaluated on the asynchronous resolver.

The MAIL FROM identity (``postmaster@HELO`` for the null sender) and the HELO identity are
checked. The limits of section 4.6.4 hold: at most 10 terms that query DNS (``include``,
``a``, ``mx``, ``ptr``, ``exists``, ``redirect``), at most 10 MX or PTR names per term and
at most 2 void lookups; past them the result is ``permerror``. A DNS failure or timeout
gives ``temperror``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass, replace

from .resolver import DNSTempError, Resolver
from .spfrecord import MacroValues, Mechanism, SPFSyntaxError, expand, expand_domain, is_spf_record, parse_record

__all__ = ["SPFResult", "SPFCheck", "check_host", "check_spf", "valid_domain"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_.\-]+")  # an address literal like [192.0.2.1] is no domain

MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_NAMES = 10  # MX exchanges or PTR names looked at per term
TOTAL_TIMEOUT = 20.0  # seconds for one whole check_host (RFC 7208 4.6.4 suggests at least 20)


@dataclass(frozen=True)
class SPFResult:
    """The verdict for one identity.

    ``result`` is one of ``none``, ``neutral``, ``pass``, ``fail``, ``softfail``,
    ``temperror`` or ``permerror``; ``identity`` is ``"mailfrom"`` or ``"helo"``.
    """

    result: str
    identity: str
    domain: str
    sender: str
    mechanism: str = ""
    explanation: str = ""
    reason: str = ""
    lookups: int = 0


@dataclass(frozen=True)
class SPFCheck:
    """Both identities: ``mailfrom`` always, ``helo`` when the HELO name is a domain."""

    mailfrom: SPFResult
    helo: SPFResult | None = None


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


def valid_domain(domain: str) -> bool:
    """A multi-label domain name with labels of 1-63 characters, 253 in all."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or len(name) > 253 or "." not in name or not _NAME_CHARACTERS.fullmatch(name):
        return False
    return all(0 < len(label) <= 63 for label in name.split("."))


class _Evaluation:
    """The state shared by one check_host() and every include/redirect below it."""

    def __init__(self, resolver: Resolver, ip: IPAddress, sender: str, helo: str, receiver: str) -> None:
        self.resolver = resolver
        self.ip = ip
        self.sender = sender
        self.helo = helo
        self.receiver = receiver
        self.lookups = 0
        self.voids = 0
        self.validated_name: str | None = None

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _PermError(f"more than {MAX_LOOKUPS} DNS lookups")

    def void(self, answer: list[str] | list[tuple[int, str]]) -> None:
        if not answer:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise _PermError(f"more than {MAX_VOID_LOOKUPS} void DNS lookups")

    async def macros(self, domain: str, text: str) -> MacroValues:
        values = MacroValues(self.sender, domain, self.ip, self.helo, self.receiver or "unknown")
        if "%{p" in text.lower():
            if self.validated_name is None:
                self.validated_name = await self._validated_name(domain)
            values = replace(values, validated_name=self.validated_name)
        return values

    async def domain(self, spec: str | None, current: str) -> str:
        if spec is None:
            return current
        try:
            return expand_domain(spec, await self.macros(current, spec))
        except SPFSyntaxError as error:
            raise _PermError(str(error)) from None

    async def addresses(self, name: str) -> list[str]:
        if self.ip.version == 4:
            return await self.resolver.a(name)
        return await self.resolver.aaaa(name)

    async def _validated_names(self, names: list[str] | None = None) -> list[str]:
        """PTR names of the client whose addresses include it (section 5.5)."""
        if names is None:
            try:
                names = await self.resolver.ptr(str(self.ip))
            except DNSTempError:
                return []
        out = []
        for name in names[:MAX_NAMES]:
            try:
                found = await self.addresses(name)
            except DNSTempError:
                continue
            if any(ipaddress.ip_address(a) == self.ip for a in found):
                out.append(name)
        return out

    async def _validated_name(self, domain: str) -> str:
        names = await self._validated_names()
        for name in names:
            if _within(name, domain):
                return name
        return names[0] if names else "unknown"

    # ------------------------------------------------------------------ check_host

    async def check_host(self, domain: str, *, explain: bool = True) -> tuple[str, str, str]:
        """(result, matched mechanism, explanation) for ``domain``; an include's result
        needs no explanation (``explain=False``: its exp= is never used)."""
        if not valid_domain(domain):
            return "none", "", ""
        try:
            texts = await self.resolver.txt(domain)
        except DNSTempError as error:
            raise _TempError(str(error)) from None
        records = [text for text in texts if is_spf_record(text)]
        if not records:
            return "none", "", ""
        if len(records) > 1:
            raise _PermError(f"more than one SPF record for {domain}")
        try:
            record = parse_record(records[0])
        except SPFSyntaxError as error:
            raise _PermError(f"{domain}: {error}") from None
        for mechanism in record.mechanisms:
            if await self.matches(mechanism, domain):
                explanation = ""
                if explain and mechanism.result == "fail" and record.explanation is not None:
                    explanation = await self.explain(record.explanation, domain)
                return mechanism.result, str(mechanism), explanation
        if record.redirect is not None and not any(m.kind == "all" for m in record.mechanisms):
            self.count()
            target = await self.domain(record.redirect, domain)
            result, mechanism_text, explanation = await self.check_host(target, explain=explain)
            if result == "none":
                raise _PermError(f"redirect to {target}, which has no SPF record")
            return result, mechanism_text, explanation
        return "neutral", "", ""

    async def matches(self, mechanism: Mechanism, domain: str) -> bool:
        kind = mechanism.kind
        if kind == "all":
            return True
        if kind in ("ip4", "ip6"):
            network = mechanism.network
            return network is not None and network.version == self.ip.version and self.ip in network
        self.count()
        target = await self.domain(mechanism.domain_spec, domain)
        try:
            if kind == "include":
                return await self._include(target)
            if kind == "a":
                found = await self.addresses(target)
                self.void(found)
                return self._in_any(found, mechanism)
            if kind == "mx":
                return await self._mx(target, mechanism)
            if kind == "ptr":
                return any(_within(name, target) for name in await self._validated_names_counted())
            found = await self.resolver.a(target)  # "exists"
            self.void(found)
            return bool(found)
        except DNSTempError as error:
            raise _TempError(str(error)) from None

    async def _include(self, target: str) -> bool:
        result, _, _ = await self.check_host(target, explain=False)
        if result == "pass":
            return True
        if result in ("fail", "softfail", "neutral"):
            return False
        raise _PermError(f"include:{target} has no SPF record")

    async def _mx(self, target: str, mechanism: Mechanism) -> bool:
        exchanges = await self.resolver.mx(target)
        self.void(exchanges)
        if len(exchanges) > MAX_NAMES:
            raise _PermError(f"more than {MAX_NAMES} MX records for {target}")
        for _, exchange in exchanges:
            if exchange in ("", ".", "@"):  # a null MX (RFC 7505): no mail server
                continue
            if self._in_any(await self.addresses(exchange), mechanism):
                return True
        return False

    async def _validated_names_counted(self) -> list[str]:
        try:
            names = await self.resolver.ptr(str(self.ip))
        except DNSTempError:
            return []
        self.void(names)
        return await self._validated_names(names)

    def _in_any(self, addresses: list[str], mechanism: Mechanism) -> bool:
        prefix = mechanism.cidr4 if self.ip.version == 4 else mechanism.cidr6
        network = ipaddress.ip_network(f"{self.ip}/{prefix}", strict=False)
        for text in addresses:
            try:
                if ipaddress.ip_address(text) in network:
                    return True
            except ValueError:
                continue
        return False

    async def explain(self, spec: str, domain: str) -> str:
        """The ``exp=`` text; empty when it cannot be had (section 6.2)."""
        try:
            target = expand_domain(spec, await self.macros(domain, spec))
            texts = await self.resolver.txt(target)
            if len(texts) != 1 or not texts[0].isascii():
                return ""
            return expand(texts[0], await self.macros(domain, texts[0]), explanation=True)
        except (SPFSyntaxError, DNSTempError):
            return ""


def _within(name: str, domain: str) -> bool:
    name, domain = name.lower().rstrip("."), domain.lower().rstrip(".")
    return name == domain or name.endswith("." + domain)


def _client_ip(ip: str) -> IPAddress:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def check_host(
    resolver: Resolver,
    ip: str,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    receiver: str = "",
    identity: str = "mailfrom",
    timeout: float = TOTAL_TIMEOUT,
) -> SPFResult:
    """RFC 7208's ``check_host(ip, domain, sender)``; never raises for DNS or record errors."""
    domain = domain.rstrip(".").lower()
    try:
        client = _client_ip(ip)
    except ValueError:
        return SPFResult("none", identity, domain, sender, reason=f"no client IP address ({ip!r})")
    evaluation = _Evaluation(resolver, client, sender, helo, receiver)
    try:
        result, mechanism, explanation = await asyncio.wait_for(evaluation.check_host(domain), timeout)
    except _PermError as error:
        return SPFResult("permerror", identity, domain, sender, reason=str(error), lookups=evaluation.lookups)
    except _TempError as error:
        return SPFResult("temperror", identity, domain, sender, reason=str(error), lookups=evaluation.lookups)
    except asyncio.TimeoutError:
        reason = f"SPF evaluation took more than {timeout:g} s"
        return SPFResult("temperror", identity, domain, sender, reason=reason, lookups=evaluation.lookups)
    return SPFResult(result, identity, domain, sender, mechanism, explanation, lookups=evaluation.lookups)


async def check_spf(
    resolver: Resolver, ip: str, mail_from: str, helo: str, *, receiver: str = "", check_helo: bool = True
) -> SPFCheck:
    """Check the MAIL FROM identity (``postmaster@HELO`` for ``<>``) and the HELO identity."""
    helo = (helo or "").strip().rstrip(".")
    helo_is_domain = valid_domain(helo) and not helo.startswith("[")

    async def helo_check() -> SPFResult | None:
        if not (check_helo and helo_is_domain):
            return None
        return await check_host(resolver, ip, helo, f"postmaster@{helo}", helo=helo, receiver=receiver, identity="helo")

    if not mail_from:  # the null sender: MAIL FROM's identity is postmaster@HELO
        helo_result = await helo_check()
        if helo_result is not None:
            return SPFCheck(replace(helo_result, identity="mailfrom"), helo_result)
        sender = f"postmaster@{helo}"
        return SPFCheck(await check_host(resolver, ip, helo, sender, helo=helo, receiver=receiver), None)
    local, _, domain = mail_from.rpartition("@")
    sender = f"{local or 'postmaster'}@{domain}"
    # both identities at once: the time is one chain of lookups, not two
    mailfrom_result, helo_result = await asyncio.gather(
        check_host(resolver, ip, domain, sender, helo=helo, receiver=receiver), helo_check()
    )
    return SPFCheck(mailfrom_result, helo_result)
