"""ARC (RFC 8617): the chain of ARC sets validated with dkimpy's ``arc_verify``, its keys
prefetched on the asynchronous resolver like DKIM's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import dkim

from .dkim import LARGE_MESSAGE, MIN_KEY_BITS, KeyCache, header_fields, key_names, signature_tags
from .resolver import DNSTempError, Resolver

__all__ = ["ARCResult", "check_arc"]

MAX_INSTANCES = 50  # RFC 8617 5.1.1.1: i= is at most 50


@dataclass(frozen=True)
class ARCResult:
    """``result`` is ``none`` (no ARC sets), ``pass``, ``fail`` or ``temperror``;
    ``instances`` is the number of ARC sets and ``domain`` the sealer of the latest."""

    result: str
    instances: int = 0
    domain: str = ""
    reason: str = ""


def _chain_domain(message: bytes) -> str:
    best = (-1, "")
    for value in header_fields(message, b"arc-seal"):
        tags = signature_tags(value)
        if tags is None:
            continue
        try:
            instance = int(tags.get(b"i", b"0"))
        except ValueError:
            continue
        if instance > best[0]:
            best = (instance, tags.get(b"d", b"").decode("ascii", "replace").lower())
    return best[1]


def verify_chain(message: bytes, keys: KeyCache, *, min_key_bits: int = MIN_KEY_BITS) -> ARCResult:
    """Validate the ARC chain with keys from ``keys`` (no DNS here)."""
    seals = header_fields(message, b"arc-seal")
    if not seals:
        return ARCResult("none")
    if len(seals) > MAX_INSTANCES:
        return ARCResult("fail", len(seals), reason="too many ARC sets")
    for record in keys.records.values():
        if isinstance(record, DNSTempError):
            return ARCResult("temperror", len(seals), _chain_domain(message), str(record))
    outcome: Any = dkim.arc_verify(message, dnsfunc=keys.dnsfunc, minkey=min_key_bits)
    cv, _, reason = outcome
    result = {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return ARCResult(result, len(seals), _chain_domain(message), "" if result == "pass" else text)


async def check_arc(
    resolver: Resolver, message: bytes, *, keys: KeyCache | None = None, min_key_bits: int = MIN_KEY_BITS
) -> ARCResult:
    """Fetch the sealers' keys asynchronously, then validate the chain."""
    keys = keys if keys is not None else KeyCache()
    names = key_names(message, b"arc-seal", b"arc-message-signature")
    if not names:
        return verify_chain(message, keys, min_key_bits=min_key_bits)
    arc_keys = KeyCache()
    await keys.fetch(resolver, names)
    arc_keys.records = {name: keys.records[name] for name in names if name in keys.records}
    if len(message) > LARGE_MESSAGE:
        return await asyncio.to_thread(verify_chain, message, arc_keys, min_key_bits=min_key_bits)
    return verify_chain(message, arc_keys, min_key_bits=min_key_bits)
