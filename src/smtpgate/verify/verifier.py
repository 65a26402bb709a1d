"""`Verifier`: SPF, DKIM, DMARC and ARC for one message, in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from .arc import ARCResult, check_arc
from .dkim import MIN_KEY_BITS, DKIMResult, check_dkim
from .dmarc import DMARCPolicy, evaluate, find_policy, organizational_domain
from .resolver import DEFAULT_TIMEOUT, Resolver
from .results import AuthResults
from .spf import SPFCheck, check_spf

__all__ = ["Verifier", "VerifyOptions"]


@dataclass(frozen=True)
class VerifyOptions:
    """Which checks run. DMARC needs SPF and DKIM, so it turns them on."""

    spf: bool = True
    helo: bool = True
    dkim: bool = True
    dmarc: bool = True
    arc: bool = True
    min_key_bits: int = MIN_KEY_BITS


class Verifier:
    """Checks who sent a message.

    :param resolver: the asynchronous `Resolver` (default: the system's name servers).
    :param nameservers: shortcut for ``Resolver(nameservers, timeout=timeout)``.
    :param timeout: seconds per DNS lookup when the resolver is made here.
    :param options: which checks run (`VerifyOptions`).

    ``await verifier.check_spf(ip, mail_from, helo)`` can run at RCPT time; ``await
    verifier.check_message(message, ip=..., mail_from=..., helo=...)`` runs everything (and
    reuses an SPF check already done) and returns `AuthResults`, whose
    ``header(authserv_id)`` is the ``Authentication-Results`` field.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        nameservers: Sequence[str | tuple[str, int]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        options: VerifyOptions | None = None,
        receiver: str = "",
    ) -> None:
        self.resolver = resolver if resolver is not None else Resolver(nameservers, timeout=timeout)
        self.options = options or VerifyOptions()
        self.receiver = receiver
        if self.options.dmarc:
            organizational_domain("example.com")  # load the Public Suffix List now, not on the event loop later

    async def check_spf(self, ip: str, mail_from: str, helo: str) -> SPFCheck:
        """SPF for the MAIL FROM identity (and HELO's, unless turned off)."""
        return await check_spf(
            self.resolver, ip, mail_from, helo or "", receiver=self.receiver, check_helo=self.options.helo
        )

    async def check_message(
        self, message: bytes, *, ip: str, mail_from: str, helo: str, spf: SPFCheck | None = None
    ) -> AuthResults:
        """Every enabled check for ``message`` (wire format, headers first)."""
        options = self.options
        want_spf = options.spf or options.dmarc
        want_dkim = options.dkim or options.dmarc

        async def spf_task() -> SPFCheck | None:
            if spf is not None or not want_spf:
                return spf
            return await self.check_spf(ip, mail_from, helo)

        async def dkim_task() -> list[DKIMResult]:
            if not want_dkim:
                return []
            return await check_dkim(self.resolver, message, min_key_bits=options.min_key_bits)

        async def arc_task() -> ARCResult | None:
            if not options.arc:
                return None
            return await check_arc(self.resolver, message, min_key_bits=options.min_key_bits)

        async def dmarc_task() -> DMARCPolicy | None:
            return await find_policy(self.resolver, message) if options.dmarc else None

        # every lookup at once: the time is the slowest chain of lookups, not their sum
        spf_check, dkim_results, arc_result, dmarc_policy = await asyncio.gather(
            spf_task(), dkim_task(), arc_task(), dmarc_task()
        )
        dmarc_result = None
        if dmarc_policy is not None:
            spf_result = spf_check.mailfrom if spf_check is not None else None
            dmarc_result = evaluate(dmarc_policy, spf_result, dkim_results)
        dkim_shown: tuple[DKIMResult, ...] = ()
        if options.dkim:
            dkim_shown = tuple(dkim_results) if dkim_results else (DKIMResult("none"),)
        return AuthResults(
            spf=spf_check.mailfrom if spf_check is not None and options.spf else None,
            helo=spf_check.helo if spf_check is not None and options.spf else None,
            dkim=dkim_shown,
            dmarc=dmarc_result,
            arc=arc_result,
            client_ip=ip,
        )
