"""DMARC (RFC 7489): the policy record of the From domain (or of its organisational
domain), identifier alignment with SPF and DKIM, and the disposition (``p=``, ``sp=``,
``pct=``).

The organisational domain comes from the Public Suffix List shipped with the
``publicsuffixlist`` package.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from .dkim import DKIMResult, header_fields
from .resolver import DNSTempError, Resolver
from .spf import SPFResult

__all__ = [
    "DMARCPolicy",
    "DMARCRecord",
    "DMARCResult",
    "DMARCSyntaxError",
    "check_dmarc",
    "evaluate",
    "find_policy",
    "from_domain",
    "organizational_domain",
    "parse_dmarc_record",
]

POLICIES = ("none", "quarantine", "reject")


class DMARCSyntaxError(ValueError):
    """Not a usable DMARC record."""


@dataclass(frozen=True)
class DMARCRecord:
    """The tags that decide the verdict (reporting tags are kept in ``tags``)."""

    policy: str
    subdomain_policy: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DMARCResult:
    """``result`` is ``none`` (no policy), ``pass``, ``fail``, ``temperror`` or
    ``permerror`` (no single From domain). ``disposition`` is what the policy asks
    for this message after ``pct`` sampling (``none``, ``quarantine``, ``reject``)."""

    result: str
    from_domain: str = ""
    policy: str = ""
    """The published policy that applies to the From domain (``p=`` or ``sp=``)."""
    disposition: str = "none"
    spf_aligned: bool = False
    dkim_aligned: bool = False
    record_domain: str = ""
    reason: str = ""


@lru_cache(maxsize=1)
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registered domain (one label below the public suffix); the domain itself when it
    is a public suffix."""
    domain = domain.lower().rstrip(".")
    found = _suffix_list().privatesuffix(domain)
    return str(found) if found else domain


def parse_dmarc_record(text: str) -> DMARCRecord:
    """Parse a ``v=DMARC1`` record; raises `DMARCSyntaxError`."""
    tags: dict[str, str] = {}
    parts = [part.strip() for part in text.split(";")]
    if not parts or re.sub(r"\s+", "", parts[0]) != "v=DMARC1":
        raise DMARCSyntaxError("does not start with v=DMARC1")
    for part in parts[1:]:
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise DMARCSyntaxError(f"invalid tag {part!r}")
        name = name.strip().lower()
        if name not in tags:
            tags[name] = value.strip()
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        if "rua" in tags:  # RFC 7489 6.6.3: a record with rua= but no valid p= is p=none
            policy = "none"
        else:
            raise DMARCSyntaxError("missing or invalid p=")
    subdomain_policy = tags.get("sp", "").lower() or None
    if subdomain_policy is not None and subdomain_policy not in POLICIES:
        subdomain_policy = None
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    pct_text = tags.get("pct", "100")
    try:
        pct = int(pct_text)
    except ValueError:
        pct = 100
    return DMARCRecord(
        policy=policy,
        subdomain_policy=subdomain_policy,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=min(max(pct, 0), 100),
        tags=tags,
    )


def from_domain(message: bytes) -> str | None:
    """The domain of the message's single From address; None without exactly one."""
    values = header_fields(message, b"from")
    if len(values) != 1:
        return None
    text = values[0].decode("utf-8", "replace")
    addresses = [address for _, address in email.utils.getaddresses([text]) if address]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    domain = addresses[0].rpartition("@")[2].strip().rstrip(".").lower()
    return domain or None


def aligned(domain: str, target: str, mode: str) -> bool:
    """Identifier alignment: equal (strict) or the same organisational domain (relaxed)."""
    domain, target = domain.lower().rstrip("."), target.lower().rstrip(".")
    if not domain or not target:
        return False
    if mode == "s":
        return domain == target
    return organizational_domain(domain) == organizational_domain(target)


async def _find_record(resolver: Resolver, domain: str) -> tuple[DMARCRecord, str] | None:
    """The record at ``_dmarc.domain``, else at the organisational domain (section 6.6.3)."""
    candidates = [domain]
    organization = organizational_domain(domain)
    if organization != domain:
        candidates.append(organization)
    for candidate in candidates:
        texts = await resolver.txt(f"_dmarc.{candidate}")
        records = [t for t in texts if re.match(r"\s*v\s*=\s*DMARC1\s*(;|$)", t)]
        if len(records) != 1:
            continue
        try:
            return parse_dmarc_record(records[0]), candidate
        except DMARCSyntaxError:
            continue
    return None


def _sampled(policy: str, pct: int, sample: Callable[[], float]) -> str:
    """The disposition after ``pct``: outside the sample, one step milder (section 6.6.4)."""
    if policy == "none" or pct >= 100 or sample() * 100 < pct:
        return policy
    return "quarantine" if policy == "reject" else "none"


@dataclass(frozen=True)
class DMARCPolicy:
    """What `find_policy` found for a message: the From domain and its record (None when
    no record applies), or the result that ends the check early (``outcome``)."""

    from_domain: str = ""
    record: DMARCRecord | None = None
    record_domain: str = ""
    outcome: DMARCResult | None = None


async def find_policy(resolver: Resolver, message: bytes) -> DMARCPolicy:
    """The From domain and its DMARC record: the DNS half of the check, which can run while
    SPF and DKIM are being checked."""
    domain = from_domain(message)
    if domain is None:
        return DMARCPolicy(outcome=DMARCResult("permerror", reason="no single From domain"))
    try:
        found = await _find_record(resolver, domain)
    except DNSTempError as error:
        return DMARCPolicy(domain, outcome=DMARCResult("temperror", domain, reason=str(error)))
    if found is None:
        return DMARCPolicy(domain, outcome=DMARCResult("none", domain))
    return DMARCPolicy(domain, found[0], found[1])


def evaluate(
    found: DMARCPolicy,
    spf: SPFResult | None,
    dkim_results: Sequence[DKIMResult],
    *,
    sample: Callable[[], float] = random.random,
) -> DMARCResult:
    """The verdict from the policy found and the SPF (MAIL FROM) and DKIM verdicts."""
    if found.outcome is not None or found.record is None:
        return found.outcome or DMARCResult("none", found.from_domain)
    record, domain = found.record, found.from_domain
    policy = record.policy
    if found.record_domain != domain and record.subdomain_policy is not None:
        policy = record.subdomain_policy
    spf_aligned = spf is not None and spf.result == "pass" and aligned(spf.domain, domain, record.aspf)
    dkim_aligned = any(r.result == "pass" and aligned(r.domain, domain, record.adkim) for r in dkim_results)
    if spf_aligned or dkim_aligned:
        return DMARCResult("pass", domain, policy, "none", spf_aligned, dkim_aligned, found.record_domain)
    disposition = _sampled(policy, record.pct, sample)
    return DMARCResult("fail", domain, policy, disposition, False, False, found.record_domain)


async def check_dmarc(
    resolver: Resolver,
    message: bytes,
    spf: SPFResult | None,
    dkim_results: Sequence[DKIMResult],
    *,
    sample: Callable[[], float] = random.random,
) -> DMARCResult:
    """DMARC for the message's From domain, from the SPF (MAIL FROM) and DKIM verdicts."""
    return evaluate(await find_policy(resolver, message), spf, dkim_results, sample=sample)
