"""DKIM (RFC 6376): every signature of a message verified, with dkimpy doing the
canonicalisation and the cryptography.

dkimpy looks keys up through a ``dnsfunc`` callback that it calls synchronously. So the key
records are fetched first on the asynchronous `Resolver` (all at once), and dkimpy gets a
``dnsfunc`` that only reads that prefetched cache: no blocking lookup on the event loop.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dkim
import dkim.util

from .resolver import DNSTempError, Resolver

__all__ = ["DKIMResult", "KeyCache", "check_dkim", "verify_signatures", "signature_tags"]

MAX_SIGNATURES = 10
"""Signatures verified per message; the rest are reported as one ``neutral`` result."""
MIN_KEY_BITS = 1024
CLOCK_DRIFT = 300
"""Seconds of tolerance for ``x=`` (expiry), as OpenDKIM's default ``ClockDrift``."""
LARGE_MESSAGE = 256 * 1024
"""Messages above this many bytes are verified in a worker thread."""


@dataclass(frozen=True)
class DKIMResult:
    """The verdict for one ``DKIM-Signature``.

    ``result`` is ``pass``, ``fail`` (the signature or body hash does not match),
    ``permerror`` (malformed, unsupported or expired signature, or no usable key: missing,
    revoked or malformed), ``policy`` (it verifies, but with a key shorter than allowed),
    ``neutral`` (not checked: too many signatures) or ``temperror`` (the key could not be
    fetched). The words are OpenDKIM's, except for a missing or revoked key or a refused
    hash (OpenDKIM says ``fail``)."""

    result: str
    domain: str = ""
    selector: str = ""
    identity: str = ""
    algorithm: str = ""
    signature: str = ""
    """The start of the ``b=`` value, for ``header.b`` (RFC 6008)."""
    reason: str = ""


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("ascii", "replace")


def signature_tags(value: bytes) -> dict[bytes, bytes] | None:
    """The tag=value list of a signature header field's value, or None if malformed."""
    try:
        tags: dict[bytes, bytes] = dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList:
        return None
    return tags


def key_name(tags: dict[bytes, bytes]) -> str | None:
    """``selector._domainkey.domain`` for a signature's tags (None without s= or d=)."""
    selector, domain = tags.get(b"s"), tags.get(b"d")
    if not selector or not domain:
        return None
    return f"{_text(selector)}._domainkey.{_text(domain)}".rstrip(".").lower()


class KeyCache:
    """Key records fetched ahead of verification: name → TXT text, None (no record) or
    the `DNSTempError` met."""

    def __init__(self) -> None:
        self.records: dict[str, str | None | DNSTempError] = {}

    async def fetch(self, resolver: Resolver, names: Iterable[str]) -> None:
        """Look up every name not cached yet, concurrently."""
        wanted = sorted({name for name in names if name not in self.records})
        if not wanted:
            return
        answers = await asyncio.gather(*(resolver.txt(name) for name in wanted), return_exceptions=True)
        for name, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, DNSTempError):
                self.records[name] = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                self.records[name] = answer[0] if answer else None

    def dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's lookup callback: answers from the cache only."""
        key = (name.decode("ascii", "replace") if isinstance(name, bytes) else name).rstrip(".").lower()
        record = self.records.get(key)
        if record is None or isinstance(record, DNSTempError):
            return None
        return record.encode("utf-8", "replace")


def header_fields(message: bytes, name: bytes) -> list[bytes]:
    """The values of every header field called ``name`` (lower case), top to bottom, with
    their folding line breaks kept."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    head = message if end < 0 else message[: end + 1]
    if name not in head.lower():
        return []
    fields: list[list[bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    values = []
    for lines in fields:
        field, colon, value = lines[0].partition(b":")
        if colon and field.rstrip().lower() == name:
            values.append(b"".join([value, *lines[1:]]))
    return values


def _key_problem(record: str | None | DNSTempError) -> tuple[str, str] | None:
    """(result, reason) when the key record cannot verify anything."""
    if isinstance(record, DNSTempError):
        return "temperror", str(record)
    if record is None:
        return "permerror", "no key for signature"
    tags = signature_tags(record.encode("utf-8", "replace"))
    if tags is None:
        return "permerror", "malformed key record"
    if not re.sub(rb"\s+", b"", tags.get(b"p", b"")):
        return "permerror", "key revoked"
    return None


def _algorithm_problem(tags: dict[bytes, bytes], record: str | None | DNSTempError) -> tuple[str, str] | None:
    """(result, reason) when the signature's hash is refused: SHA-1 (RFC 8301) or a hash
    the key's ``h=`` does not list (RFC 6376 section 3.6.1)."""
    algorithm = tags.get(b"a", b"").strip().lower()
    if algorithm == b"rsa-sha1":
        return "permerror", "rsa-sha1 signatures are not accepted (RFC 8301)"
    key_tags = signature_tags(record.encode("utf-8", "replace")) if isinstance(record, str) else None
    allowed = key_tags.get(b"h") if key_tags else None
    if allowed is not None:
        hashes = {h.strip().lower() for h in allowed.split(b":")}
        if algorithm.rpartition(b"-")[2] not in hashes:
            return "permerror", "the key does not allow this hash algorithm"
    return None


def verify_signatures(
    message: bytes,
    keys: KeyCache,
    *,
    min_key_bits: int = MIN_KEY_BITS,
    clock_drift: int = CLOCK_DRIFT,
    now: float | None = None,
) -> list[DKIMResult]:
    """Verify every DKIM-Signature of ``message`` with keys from ``keys`` (no DNS here)."""
    now = time.time() if now is None else now
    values = header_fields(message, b"dkim-signature")
    results: list[DKIMResult] = []
    verifier: Any = None
    for index, value in enumerate(values[:MAX_SIGNATURES]):
        tags = signature_tags(value)
        if tags is None:
            results.append(DKIMResult("permerror", reason="malformed signature"))
            continue
        base = DKIMResult(
            "neutral",
            domain=_text(tags.get(b"d")).lower(),
            selector=_text(tags.get(b"s")),
            identity=_text(tags.get(b"i")) or ("@" + _text(tags.get(b"d")) if tags.get(b"d") else ""),
            algorithm=_text(tags.get(b"a")),
            signature=re.sub(r"\s+", "", _text(tags.get(b"b")))[:12],
        )
        name = key_name(tags)
        if name is None:
            results.append(_with(base, "permerror", "signature without s= or d="))
            continue
        expiry = tags.get(b"x", b"").strip()
        if expiry.isdigit() and int(expiry) + clock_drift < now:
            results.append(_with(base, "permerror", "signature expired"))
            continue
        problem = _key_problem(keys.records.get(name)) or _algorithm_problem(tags, keys.records.get(name))
        if problem is not None:
            results.append(_with(base, *problem))
            continue
        if verifier is None:
            verifier = dkim.DKIM(message, minkey=min_key_bits)
        results.append(_verify_one(verifier, index, base, keys))
    if len(values) > MAX_SIGNATURES:  # one entry for the rest, not one header line each
        results.append(DKIMResult("neutral", reason=f"{len(values) - MAX_SIGNATURES} more signatures not checked"))
    return results


def _with(base: DKIMResult, result: str, reason: str = "") -> DKIMResult:
    return DKIMResult(result, base.domain, base.selector, base.identity, base.algorithm, base.signature, reason)


def _verify_one(verifier: Any, index: int, base: DKIMResult, keys: KeyCache) -> DKIMResult:
    try:
        valid = verifier.verify(idx=index, dnsfunc=keys.dnsfunc)
    except dkim.KeyFormatError as error:
        reason = _reason(error)
        # a signature that verifies with a key shorter than allowed fails local policy
        return _with(base, "policy" if "too small" in reason else "permerror", reason)
    except dkim.ValidationError as error:
        reason = _reason(error)
        return _with(base, "fail" if "body hash" in reason else "permerror", reason)
    except dkim.DKIMException as error:
        return _with(base, "permerror", _reason(error))
    if valid:
        return _with(base, "pass")
    return _with(base, "fail", "signature verification failed")


def _reason(error: BaseException) -> str:
    text = str(error).split("(", 1)[0].strip()
    return text or type(error).__name__


def key_names(message: bytes, *header_names: bytes) -> list[str]:
    """The key record names the signatures in these header fields need."""
    names = []
    for header in header_names:
        for value in header_fields(message, header)[:MAX_SIGNATURES]:
            tags = signature_tags(value)
            name = key_name(tags) if tags is not None else None
            if name is not None:
                names.append(name)
    return names


async def check_dkim(
    resolver: Resolver,
    message: bytes,
    *,
    keys: KeyCache | None = None,
    min_key_bits: int = MIN_KEY_BITS,
    clock_drift: int = CLOCK_DRIFT,
) -> list[DKIMResult]:
    """Fetch the keys asynchronously, then verify every signature; [] when unsigned."""
    keys = keys if keys is not None else KeyCache()
    await keys.fetch(resolver, key_names(message, b"dkim-signature"))
    if len(message) > LARGE_MESSAGE:
        return await asyncio.to_thread(
            verify_signatures, message, keys, min_key_bits=min_key_bits, clock_drift=clock_drift
        )
    return verify_signatures(message, keys, min_key_bits=min_key_bits, clock_drift=clock_drift)
