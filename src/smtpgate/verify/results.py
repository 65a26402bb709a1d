"""The verdicts for one message and its ``Authentication-Results`` header field (RFC 8601)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .arc import ARCResult
from .dkim import DKIMResult
from .dmarc import DMARCResult
from .spf import SPFResult

__all__ = ["AuthResults", "remove_own_results", "render_header"]

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+\Z")  # RFC 2045 token characters, minus "/" "@" etc.
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9])?\Z")


@dataclass(frozen=True)
class AuthResults:
    """Everything checked for one message."""

    spf: SPFResult | None = None
    helo: SPFResult | None = None
    dkim: tuple[DKIMResult, ...] = ()
    dmarc: DMARCResult | None = None
    arc: ARCResult | None = None
    client_ip: str = ""
    extra: tuple[str, ...] = field(default=())
    """Further ``method=result ...`` entries to put in the header, already rendered."""

    def header(self, authserv_id: str) -> str:
        """The whole ``Authentication-Results:`` field, folded, ending in CRLF."""
        return render_header(self, authserv_id)

    @property
    def temporary_failure(self) -> bool:
        """True when SPF (MAIL FROM), a DKIM signature or DMARC met a temporary DNS error:
        DMARC's verdict might have been different with an answer."""
        results = [r.result for r in (self.spf, self.dmarc) if r is not None]
        results += [r.result for r in self.dkim]
        return "temperror" in results


def _value(text: str) -> str:
    """A property value or result reason: a token as is, else a quoted string."""
    if text and _TOKEN.match(text):
        return text
    cleaned = "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)
    # no quoted-pairs: some readers of the header do not undo them
    return '"' + cleaned.replace("\\", "/").replace('"', "'") + '"'


def _address(text: str) -> str:
    """``local@domain`` (or a domain) as a pvalue: kept when it is plain, quoted otherwise."""
    local, at, domain = text.rpartition("@")
    if _DOMAIN.match(domain or "") and (not local or _TOKEN.match(local)):
        return text
    return _value(text)


def _reason(text: str) -> str:
    return f" reason={_value(text[:200])}" if text else ""


def _spf(result: SPFResult, ptype: str) -> str:
    value = result.sender if ptype == "mailfrom" else result.domain
    return f"spf={result.result}{_reason(result.reason)} smtp.{ptype}={_address(value)}"


def _dkim(result: DKIMResult) -> str:
    text = f"dkim={result.result}{_reason(result.reason)}"
    if result.domain:
        text += f" header.d={_address(result.domain)}"
    if result.identity:
        text += f" header.i={_address(result.identity)}"
    if result.selector:
        text += f" header.s={_value(result.selector)}"
    if result.algorithm:
        text += f" header.a={_value(result.algorithm)}"
    if result.signature:
        text += f" header.b={_value(result.signature[:8])}"
    return text


def _dmarc(result: DMARCResult) -> str:
    text = f"dmarc={result.result}"
    if result.policy:
        text += f" (p={result.policy} dis={result.disposition})"
    text += _reason(result.reason)
    if result.from_domain:
        text += f" header.from={_address(result.from_domain)}"
    return text


def _arc(result: ARCResult) -> str:
    text = f"arc={result.result}"
    if result.instances:
        text += f" (i={result.instances})"
    text += _reason(result.reason)
    if result.domain:
        text += f" header.d={_address(result.domain)}"
    return text


def render_header(results: AuthResults, authserv_id: str) -> str:
    """``Authentication-Results: authserv-id; method=result ...; ...`` with one method per
    line; ``none`` alone when nothing was checked."""
    entries: list[str] = []
    if results.spf is not None:
        entries.append(_spf(results.spf, "mailfrom"))
    if results.helo is not None:
        entries.append(_spf(results.helo, "helo"))
    entries += [_dkim(result) for result in results.dkim]
    if results.dmarc is not None:
        entries.append(_dmarc(results.dmarc))
    if results.arc is not None:
        entries.append(_arc(results.arc))
    entries += list(results.extra)
    server = _value(authserv_id) if authserv_id else "localhost"
    if not entries:
        return f"Authentication-Results: {server}; none\r\n"
    return f"Authentication-Results: {server};\r\n\t" + ";\r\n\t".join(entries) + "\r\n"


def _authserv_id(value: bytes) -> str:
    """The authserv-id of an Authentication-Results value (comments and version dropped)."""
    text = value.split(b";", 1)[0].decode("utf-8", "replace")
    text = re.sub(r"\([^()]*\)", " ", text)
    words = text.split()
    return words[0].strip('"').lower() if words else ""


def remove_own_results(message: bytes, authserv_id: str) -> bytes:
    """The message without ``Authentication-Results`` fields that claim ``authserv_id``:
    they can only be forgeries from upstream (RFC 8601 section 5)."""
    end = message.find(b"\r\n\r\n")
    if end < 0 or b"authentication-results" not in message[:end].lower():
        return message
    fields: list[list[bytes]] = []
    for line in message[:end].split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    wanted = authserv_id.lower()
    kept = []
    for field_lines in fields:
        name, colon, value = field_lines[0].partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            if _authserv_id(b" ".join([value, *field_lines[1:]])) == wanted:
                continue
        kept.append(b"\r\n".join(field_lines))
    if len(kept) == len(fields):
        return message
    return b"\r\n".join(kept) + message[end:]
