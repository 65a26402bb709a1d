"""Parsing the arguments of MAIL and RCPT: the reverse/forward path and ESMTP parameters.

Follows RFC 5321 section 4.1.2 with RFC 6531 (UTF-8) extensions. Everything here is pure
and raises `SyntaxProblem` with a reason that can go into a 501 reply.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

__all__ = [
    "SyntaxProblem",
    "split_path_argument",
    "parse_mailbox",
    "plain_path",
    "PLAIN_FROM",
    "PLAIN_TO",
    "parse_params",
    "xtext_decode",
]

MAX_ADDRESS_LENGTH: Final = 254  # a path is at most 256 octets including the angle brackets

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM: Final = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_QUOTED: Final = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_LABEL = r"(?!-)[A-Za-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)"
_DOMAIN: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # labels of 1-63, no hyphen at either end
_PARAM_KEY: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_XTEXT: Final = re.compile(r"\+([0-9A-F]{2})")
# Characters that never belong in an address: controls, C1 controls, invisible spacing.
_FORBIDDEN: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200b\u2060\ufeff]")
# The common mailbox: ASCII atext and dots, "@", an ASCII host name. One match of plain
# character runs (no backtracking), then `_is_plain_mailbox` checks the dots and hyphens.
# All it accepts the full checks accept as it is; the rest goes to them.
_PLAIN_MAILBOX_TEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9.\-]+"
_PLAIN_MAILBOX: Final = re.compile(_PLAIN_MAILBOX_TEXT)
# The usual whole argument, "FROM:<mailbox>" or "TO:<mailbox>" and nothing else: one match
# instead of splitting the argument and matching the mailbox (ASCII keywords, no spaces).
PLAIN_FROM: Final = re.compile(rf"[Ff][Rr][Oo][Mm]:<({_PLAIN_MAILBOX_TEXT})>")
PLAIN_TO: Final = re.compile(rf"[Tt][Oo]:<({_PLAIN_MAILBOX_TEXT})>")


_PATH_HEADS: dict[str, re.Pattern[str]] = {}


class SyntaxProblem(ValueError):
    """A malformed path or parameter; ``str()`` is the reason for the reply."""


def split_path_argument(argument: str, keyword: str) -> tuple[str, str]:
    """Split ``FROM:<path> params`` into the text inside the brackets and the parameters.

    Spaces around the colon are tolerated, the angle brackets are required. Quoted local
    parts may contain ``>`` and spaces.
    """
    size = len(keyword) + 1
    head_text = argument[:size]
    if head_text.isascii() and head_text.upper() == keyword + ":":  # the common "FROM:<...>"
        rest = argument[size:]
        if rest[:1].isspace():
            rest = rest.lstrip()
    else:
        pattern = _PATH_HEADS.get(keyword)
        if pattern is None:
            pattern = _PATH_HEADS[keyword] = re.compile(rf"\s*{keyword}\s*:\s*", re.IGNORECASE)
        head = pattern.match(argument)
        if head is None:
            raise SyntaxProblem(f"syntax: {keyword}:<address>")
        rest = argument[head.end() :]
    if not rest.startswith("<"):
        raise SyntaxProblem("address must be enclosed in <>")
    if '"' not in rest:  # the common case: no quoted local part, the first ">" ends the path
        end = rest.find(">")
        if end < 0 or "<" in rest[1:end]:
            raise SyntaxProblem("address must be enclosed in <>")
        params = rest[end + 1 :]
        if params and not params[0].isspace():
            raise SyntaxProblem("expected a space after the address")
        return rest[1:end], params.strip()
    in_quote = False
    i = 1
    end = -1
    while i < len(rest):
        ch = rest[i]
        if in_quote and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_quote = not in_quote
        elif ch == ">" and not in_quote:
            end = i
            break
        elif ch == "<" and not in_quote:
            break
        i += 1
    if end < 0:
        raise SyntaxProblem("address must be enclosed in <>")
    params = rest[end + 1 :]
    if params and not params[0].isspace():
        raise SyntaxProblem("expected a space after the address")
    return rest[1:end], params.strip()


def parse_mailbox(path: str, *, allow_null: bool, allow_postmaster: bool) -> str:
    """Validate the text inside ``<>`` and return the mailbox (source routes dropped)."""
    if _is_plain_mailbox(path):
        return path
    return _parse_mailbox_fully(path, allow_null=allow_null, allow_postmaster=allow_postmaster)


def plain_path(argument: str, pattern: re.Pattern[str]) -> str | None:
    """The mailbox of a whole argument ``PLAIN_FROM`` or ``PLAIN_TO`` matches, if it is
    plain (see `parse_mailbox`); None for anything else, which the full parse decides."""
    match = pattern.fullmatch(argument)
    if match is None:
        return None
    path: str = match[1]
    return path if _has_plain_shape(path) else None


def _is_plain_mailbox(path: str) -> bool:
    """A dot-atom at a host name, all ASCII, within the length limit (the common case)."""
    return _PLAIN_MAILBOX.fullmatch(path) is not None and _has_plain_shape(path)


def _has_plain_shape(path: str) -> bool:
    """For a path of ``_PLAIN_MAILBOX``'s characters: no empty atom or label, no hyphen at
    a label's end, labels of at most 63 and the whole within the length limit."""
    if len(path) > MAX_ADDRESS_LENGTH:
        return False
    if path[0] == "." or path[-1] == "." or ".." in path or ".@" in path or "@." in path:
        return False  # an empty atom or label
    domain = path[path.find("@") + 1 :]
    if "-" in domain and (domain[0] == "-" or domain[-1] == "-" or "-." in domain or ".-" in domain):
        return False  # a label that starts or ends with a hyphen
    return len(domain) <= 63 or max(map(len, domain.split("."))) <= 63


def _parse_mailbox_fully(path: str, *, allow_null: bool, allow_postmaster: bool) -> str:
    """`parse_mailbox` for any path: quoted local parts, UTF-8, address literals, routes."""
    if path.startswith("@"):
        # A source route (RFC 5321 appendix C): "@a,@b:user@domain". Obsolete; ignored.
        route, sep, path = path.partition(":")
        if not sep or not all(part.startswith("@") and _is_domain(part[1:]) for part in route.split(",")):
            raise SyntaxProblem("bad source route")
    if path == "":
        if allow_null:
            return ""
        raise SyntaxProblem("the null address is not allowed here")
    if _FORBIDDEN.search(path):
        raise SyntaxProblem("control or invisible characters in address")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_ADDRESS_LENGTH:
        raise SyntaxProblem("address too long")
    if allow_postmaster and path.lower() == "postmaster":
        return path
    if path.startswith('"'):
        match = _QUOTED.match(path)
    else:
        match = _DOT_ATOM.match(path)
    if match is None or path[match.end() : match.end() + 1] != "@":
        raise SyntaxProblem("bad local part")
    domain = path[match.end() + 1 :]
    if not _is_domain(domain) and not _is_address_literal(domain):
        raise SyntaxProblem("bad domain")
    return path


def _is_domain(domain: str) -> bool:
    if not domain or len(domain) > 253:
        return False
    return _DOMAIN.fullmatch(domain) is not None


def _is_address_literal(domain: str) -> bool:
    if len(domain) < 3 or domain[0] != "[" or domain[-1] != "]":
        return False
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext (``+HH`` hex escapes, upper-case hex)."""
    if "+" not in value:
        return value
    return _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value)


def parse_params(text: str) -> dict[str, str | bool]:
    """Parse ``KEY=value KEY2`` into a dict; keys upper-cased, values xtext-decoded.

    Raises on a malformed key, a duplicate key, or a control character in a value.
    """
    params: dict[str, str | bool] = {}
    if not text:
        return params
    for token in text.split():
        key, eq, value = token.partition("=")
        if not _PARAM_KEY.fullmatch(key):
            raise SyntaxProblem(f"bad parameter syntax {token[:40]!r}")
        key = key.upper()
        if key in params:
            raise SyntaxProblem(f"duplicate {key} parameter")
        if not eq:
            params[key] = True
            continue
        decoded = xtext_decode(value)
        if _FORBIDDEN.search(decoded):
            raise SyntaxProblem(f"control characters in {key} parameter")
        params[key] = decoded
    return params


@functools.lru_cache(maxsize=4096)  # every connection asks twice, clients come back
def plain_ip(address: str) -> str:
    """An IP address as sockets report it: no scope id, IPv4-mapped IPv6 as IPv4,
    IPv6 in its compressed form. Raises ``ValueError`` if it is no IP address."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)
