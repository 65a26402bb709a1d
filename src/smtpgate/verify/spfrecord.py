"""SPF records (RFC 7208 sections 4.6, 5, 6 and 7): parsing into terms, and macro expansion.

Pure functions, no DNS: `parse_record` checks the whole record first (any syntax error is a
``permerror`` before anything is evaluated), `expand` fills in a macro string.
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "SPFSyntaxError",
    "Mechanism",
    "Record",
    "MacroValues",
    "is_spf_record",
    "parse_record",
    "expand",
    "expand_domain",
    "check_macro_string",
]

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)\Z", re.DOTALL)
_MECHANISM = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9]*)(.*)\Z", re.DOTALL)
_DOMAIN_CIDR = re.compile(r"(?::(?P<spec>.+?))?(?:/(?P<c4>\d+))?(?://(?P<c6>\d+))?\Z", re.DOTALL)
_CIDR = re.compile(r"0|[1-9][0-9]{0,2}")
_MACRO = re.compile(
    r"%(?:\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delims>[.\-+,/_=]*)\}|(?P<esc>[%_\-]))"
)
_TOPLABEL = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]+\Z|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9]\Z")
_MACRO_LETTERS = set("slodiphv")
_EXP_LETTERS = _MACRO_LETTERS | set("crt")


class SPFSyntaxError(ValueError):
    """The record (or a macro in it) breaks RFC 7208's grammar: ``permerror``."""


@dataclass(frozen=True)
class Mechanism:
    """One directive: qualifier, kind (``"ip4"``, ``"include"``...) and its arguments."""

    qualifier: str
    kind: str
    domain_spec: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128

    @property
    def result(self) -> str:
        """The result when this mechanism matches."""
        return QUALIFIERS[self.qualifier]

    def __str__(self) -> str:
        text = self.kind
        if self.network is not None:
            text += f":{self.network}"
        elif self.domain_spec is not None:
            text += f":{self.domain_spec}"
        if self.kind in ("a", "mx"):
            if self.cidr4 != 32:
                text += f"/{self.cidr4}"
            if self.cidr6 != 128:
                text += f"//{self.cidr6}"
        return ("" if self.qualifier == "+" else self.qualifier) + text


@dataclass(frozen=True)
class Record:
    """A parsed ``v=spf1`` record."""

    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None
    explanation: str | None = None


def is_spf_record(text: str) -> bool:
    """True for a TXT string that is an SPF version 1 record."""
    head = text[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def _check_cidr(text: str | None, maximum: int, term: str) -> int:
    if text is None:
        return maximum
    if not _CIDR.fullmatch(text) or int(text) > maximum:
        raise SPFSyntaxError(f"invalid prefix length in {term!r}")
    return int(text)


def check_macro_string(text: str, *, explanation: bool = False) -> None:
    """Raise `SPFSyntaxError` unless ``text`` is a valid macro-string."""
    letters = _EXP_LETTERS if explanation else _MACRO_LETTERS
    position = 0
    for match in _MACRO.finditer(text):
        _check_literal(text[position : match.start()], explanation)
        letter = match.group("letter")
        if letter is not None:
            if letter.lower() not in letters:
                raise SPFSyntaxError(f"invalid macro letter {letter!r} in {text!r}")
            digits = match.group("digits")
            if digits and (int(digits) == 0 or len(digits) > 3):
                raise SPFSyntaxError(f"invalid macro transformer in {text!r}")
        position = match.end()
    _check_literal(text[position:], explanation)


def _check_literal(text: str, explanation: bool) -> None:
    for char in text:
        if char == "%":
            raise SPFSyntaxError("a '%' that starts no macro")
        if not (0x21 <= ord(char) <= 0x7E or (explanation and char == " ")):
            raise SPFSyntaxError(f"invalid character {char!r} in a macro string")


def check_domain_spec(spec: str) -> None:
    """Raise `SPFSyntaxError` unless ``spec`` is a valid domain-spec."""
    if not spec:
        raise SPFSyntaxError("empty domain")
    check_macro_string(spec)
    macros = list(_MACRO.finditer(spec))
    last = macros[-1] if macros else None
    if last is not None and last.end() == len(spec) and last.group("letter") is not None:
        return  # ends with a macro-expand
    body = spec[:-1] if spec.endswith(".") else spec
    head, dot, label = body.rpartition(".")
    if not dot or not head or not _TOPLABEL.match(label):
        raise SPFSyntaxError(f"invalid domain {spec!r}")


def _parse_mechanism(term: str) -> Mechanism:
    match = _MECHANISM.match(term)
    if not match:
        raise SPFSyntaxError(f"invalid term {term!r}")
    qualifier = match.group(1) or "+"
    kind = match.group(2).lower()
    rest = match.group(3)
    if kind not in MECHANISMS:
        raise SPFSyntaxError(f"unknown mechanism {term!r}")
    if kind == "all":
        if rest:
            raise SPFSyntaxError(f"invalid term {term!r}")
        return Mechanism(qualifier, kind)
    if kind in ("include", "exists"):
        if not rest.startswith(":"):
            raise SPFSyntaxError(f"{kind} needs a domain: {term!r}")
        check_domain_spec(rest[1:])
        return Mechanism(qualifier, kind, rest[1:])
    if kind in ("ip4", "ip6"):
        return Mechanism(qualifier, kind, network=_parse_network(kind, rest, term))
    if kind == "ptr":
        if not rest:
            return Mechanism(qualifier, kind)
        if not rest.startswith(":"):
            raise SPFSyntaxError(f"invalid term {term!r}")
        check_domain_spec(rest[1:])
        return Mechanism(qualifier, kind, rest[1:])
    cidr = _DOMAIN_CIDR.match(rest)
    if cidr is None or (rest and not rest.startswith((":", "/"))):
        raise SPFSyntaxError(f"invalid term {term!r}")
    spec = cidr.group("spec")
    if spec is not None:
        check_domain_spec(spec)
    elif rest.startswith(":"):
        raise SPFSyntaxError(f"empty domain in {term!r}")
    return Mechanism(
        qualifier,
        kind,
        spec,
        cidr4=_check_cidr(cidr.group("c4"), 32, term),
        cidr6=_check_cidr(cidr.group("c6"), 128, term),
    )


def _parse_network(kind: str, rest: str, term: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not rest.startswith(":"):
        raise SPFSyntaxError(f"{kind} needs an address: {term!r}")
    address, slash, length = rest[1:].partition("/")
    maximum = 32 if kind == "ip4" else 128
    prefix = _check_cidr(length if slash else None, maximum, term)
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address
        ip = ipaddress.IPv4Address(address) if kind == "ip4" else ipaddress.IPv6Address(address)
    except ValueError:
        raise SPFSyntaxError(f"invalid address in {term!r}") from None
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


def parse_record(text: str) -> Record:
    """Parse a whole ``v=spf1`` record; raises `SPFSyntaxError`."""
    if not is_spf_record(text):
        raise SPFSyntaxError("not an SPF record")
    if not text.isascii():
        raise SPFSyntaxError("non-ASCII characters in the record")
    mechanisms: list[Mechanism] = []
    redirect: str | None = None
    explanation: str | None = None
    for term in text[6:].split(" "):
        if not term:
            continue
        modifier = _MODIFIER.match(term)
        if modifier is not None:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in ("redirect", "exp"):
                if (redirect if name == "redirect" else explanation) is not None:
                    raise SPFSyntaxError(f"more than one {name}= modifier")
                check_domain_spec(value)
                if name == "redirect":
                    redirect = value
                else:
                    explanation = value
            else:
                check_macro_string(value)  # unknown modifiers are ignored, but must be well formed
            continue
        mechanisms.append(_parse_mechanism(term))
    return Record(tuple(mechanisms), redirect, explanation)


@dataclass(frozen=True)
class MacroValues:
    """What the macro letters stand for in one evaluation."""

    sender: str
    domain: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    helo: str = ""
    receiver: str = "unknown"
    validated_name: str = "unknown"

    def value(self, letter: str) -> str:
        local, _, sender_domain = self.sender.rpartition("@")
        if letter == "s":
            return self.sender
        if letter == "l":
            return local or "postmaster"
        if letter == "o":
            return sender_domain
        if letter == "d":
            return self.domain
        if letter == "i":
            if self.ip.version == 4:
                return str(self.ip)
            return ".".join(self.ip.exploded.replace(":", ""))
        if letter == "p":
            return self.validated_name
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "c":
            return str(self.ip)
        if letter == "r":
            return self.receiver
        return str(int(time.time()))  # "t"


def _transform(value: str, digits: str, reverse: bool, delimiters: str) -> str:
    parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
    if reverse:
        parts.reverse()
    if digits:
        parts = parts[-int(digits) :]
    return ".".join(parts)


def expand(text: str, values: MacroValues, *, explanation: bool = False) -> str:
    """Fill in the macros of ``text``; raises `SPFSyntaxError` on a bad macro."""
    check_macro_string(text, explanation=explanation)

    def replace(match: re.Match[str]) -> str:
        escape = match.group("esc")
        if escape is not None:
            return {"%": "%", "_": " ", "-": "%20"}[escape]
        letter = match.group("letter")
        result = _transform(
            values.value(letter.lower()), match.group("digits"), bool(match.group("reverse")), match.group("delims")
        )
        if letter.isupper():
            result = urllib.parse.quote(result, safe="-._~")
        return result

    return _MACRO.sub(replace, text)


def expand_domain(spec: str, values: MacroValues) -> str:
    """Expand a domain-spec and shorten it to 253 characters by dropping labels on the left."""
    domain = expand(spec, values).rstrip(".")
    while len(domain) > 253 and "." in domain:
        domain = domain.split(".", 1)[1]
    return domain
