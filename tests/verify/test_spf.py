"""SPF against a real DNS server (Knot on loopback): the RFC 7208 behaviours that apply —
mechanisms, qualifiers, include/redirect, macros, ptr, exp=, the lookup and void limits,
syntax errors as permerror, DNS failures and timeouts as temperror."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import pytest
from dnsserver import KnotServer, txt, zone

from smtpgate.verify.resolver import Resolver
from smtpgate.verify.spf import SPFResult, check_host, check_spf

RECORDS = {
    "basic": "v=spf1 ip4:192.0.2.1 -all",
    "soft": "v=spf1 ip4:192.0.2.1 ~all",
    "neutral": "v=spf1 ip4:192.0.2.1 ?all",
    "nomatch": "v=spf1 ip4:192.0.2.1",
    "empty": "v=spf1",
    "spaces": "v=spf1   ip4:192.0.2.1    -all  ",
    "upper": "V=SPF1 IP4:192.0.2.1 -ALL",
    "net": "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 -all",
    "badip": "v=spf1 ip4:192.0.2.300 -all",
    "badcidr": "v=spf1 ip4:192.0.2.1/33 -all",
    "unknownmech": "v=spf1 foo:bar -all",
    "latesyntax": "v=spf1 ip4:192.0.2.1 -all moo",
    "unknownmod": "v=spf1 moo=cow ip4:192.0.2.1 -all",
    "badtoplabel": "v=spf1 a:foo.123 -all",
    "badmacro": "v=spf1 a:%{x}.example.com -all",
    "tworedirect": "v=spf1 redirect=basic.spf.test redirect=soft.spf.test",
    "notspf": "v=spf10 -all",
    "inc": "v=spf1 include:inc-target.spf.test -all",
    "inc-target": "v=spf1 ip4:192.0.2.5 -all",
    "incnone": "v=spf1 include:nospf.spf.test -all",
    "inctemp": "v=spf1 include:x.broken.test -all",
    "redir": "v=spf1 redirect=redir-target.spf.test",
    "redir-target": "v=spf1 ip4:192.0.2.6 ~all",
    "redirnone": "v=spf1 redirect=nospf.spf.test",
    "redirall": "v=spf1 ?all redirect=basic.spf.test",
    "amech": "v=spf1 a -all",
    "acidr": "v=spf1 a:host.spf.test/24 -all",
    "a6": "v=spf1 a:host.spf.test//64 -all",
    "mxmech": "v=spf1 mx -all",
    "mxmany": "v=spf1 mx -all",
    "ptr": "v=spf1 ptr -all",
    "macro": "v=spf1 exists:%{ir}.%{l1r-}.lp._spf.%{d} -all",
    "macroupper": "v=spf1 exists:%{L}.up.spf.test -all",
    "exp": "v=spf1 -all exp=explain.spf.test",
    "loop": "v=spf1 include:loop.spf.test -all",
    "ten": "v=spf1 " + " ".join(f"a:h{i}.spf.test" for i in range(1, 11)) + " -all",
    "eleven": "v=spf1 " + " ".join(f"a:h{i}.spf.test" for i in range(1, 12)) + " -all",
    "twovoid": "v=spf1 a:void1.spf.test a:void2.spf.test -all",
    "threevoid": "v=spf1 a:void1.spf.test a:void2.spf.test exists:void3.spf.test -all",
    "helo": "v=spf1 ip4:192.0.2.40 -all",
    "pmacro": "v=spf1 exists:%{p}.allowed.spf.test -all",
    "emptyexp": "v=spf1 -all exp=",
    "emptyredirect": "v=spf1 redirect=",
    "incneutral": "v=spf1 include:neutral.spf.test -all",
    "trailingdot": "v=spf1 a:amech.spf.test. -all",
    "nullmx": "v=spf1 mx -all",
    "redirimplicit": "v=spf1 redirect=implicit-target.spf.test",
    "implicit-target": "v=spf1 a -all",
    "redirexp": "v=spf1 exp=explain.spf.test redirect=plainfail.spf.test",
    "plainfail": "v=spf1 -all",
    "incexp": "v=spf1 include:exp.spf.test -all",
    "expvoid": "v=spf1 a:void1.spf.test a:void2.spf.test exp=nothing-here.spf.test -all",
    "digitmod": "v=spf1 9lives=yes -all",
    "eqall": "v=spf1 =all",
    "helomacro": "v=spf1 a:%{h}.hm.spf.test -all",
    "atlimit": "v=spf1 a mx a mx a mx a mx a ptr ip4:192.0.2.1 -all",
}


def spf_zone() -> str:
    lines = [f"{name} TXT {txt(value)}" for name, value in RECORDS.items()]
    lines += [
        f"@ TXT {txt('v=spf1 ip4:192.0.2.0/24 -all')}",
        f"multi TXT {txt('v=spf1 +all')}",
        f"multi TXT {txt('v=spf1 -all')}",
        f"withother TXT {txt('google-site-verification=abc')}",
        f"withother TXT {txt('v=spf1 ip4:192.0.2.7 -all')}",
        "nospf A 192.0.2.99",
        "amech A 192.0.2.30",
        "amech AAAA 2001:db8::30",
        "host A 203.0.113.77",
        "host AAAA 2001:db8:1:2::1",
        "mxmech MX 10 mail.spf.test.",
        "mxmech MX 20 mail2.spf.test.",
        "mail A 192.0.2.50",
        "mail2 A 192.0.2.51",
        "host.ptr A 192.0.2.20",
        "liar.ptr A 192.0.2.99",
        f"explain TXT {txt('%{i} is not one of %{d}s designated mail servers')}",
        "3.2.0.192.strong.lp._spf.macro A 127.0.0.2",
        "strong-bad.up A 127.0.0.2",
        "host.ptr.spf.test.allowed A 127.0.0.2",
        'multistring TXT "v=spf1 ip4:192.0.2." "1 -all"',
        "nullmx MX 0 .",
        "redirimplicit A 192.0.2.60",
        "implicit-target A 192.0.2.61",
        "atlimit A 198.51.100.250",
        "atlimit MX 10 atlimit.spf.test.",
        "good.hm A 192.0.2.70",
    ]
    lines += [f"mxmany MX {i} mx{i}.spf.test." for i in range(11)]
    lines += [f"h{i} A 198.51.100.{i}" for i in range(1, 12)]
    return zone("spf.test", "\n".join(lines))


def reverse_zone() -> str:
    return zone("2.0.192.in-addr.arpa", "20 PTR host.ptr.spf.test.\n21 PTR liar.ptr.spf.test.")


@pytest.fixture(scope="module")
def dns_server(knot: Callable[[dict[str, str | None]], KnotServer]) -> KnotServer:
    return knot({"spf.test": spf_zone(), "2.0.192.in-addr.arpa": reverse_zone(), "broken.test": None})


@pytest.fixture
def resolver(dns_server: KnotServer) -> Resolver:
    return Resolver([dns_server.address], timeout=3.0)


def host(resolver: Resolver, ip: str, domain: str, sender: str | None = None) -> SPFResult:
    return asyncio.run(check_host(resolver, ip, domain, sender or f"strong-bad@{domain}"))


@pytest.mark.parametrize(
    ("name", "ip", "expected"),
    [
        ("basic", "192.0.2.1", "pass"),
        ("basic", "192.0.2.2", "fail"),
        ("soft", "192.0.2.2", "softfail"),
        ("neutral", "192.0.2.2", "neutral"),
        ("nomatch", "192.0.2.2", "neutral"),
        ("empty", "192.0.2.2", "neutral"),
        ("spaces", "192.0.2.1", "pass"),
        ("upper", "192.0.2.1", "pass"),
        ("net", "198.51.100.200", "pass"),
        ("net", "2001:db8:ffff::1", "pass"),
        ("net", "2001:db9::1", "fail"),
        ("net", "::ffff:198.51.100.3", "pass"),
        ("nospf", "192.0.2.1", "none"),
        ("nx", "192.0.2.1", "none"),
        ("notspf", "192.0.2.1", "none"),
        ("multi", "192.0.2.1", "permerror"),
        ("withother", "192.0.2.7", "pass"),
        ("badip", "192.0.2.1", "permerror"),
        ("badcidr", "192.0.2.1", "permerror"),
        ("unknownmech", "192.0.2.1", "permerror"),
        ("latesyntax", "192.0.2.1", "permerror"),
        ("unknownmod", "192.0.2.1", "pass"),
        ("badtoplabel", "192.0.2.1", "permerror"),
        ("badmacro", "192.0.2.1", "permerror"),
        ("tworedirect", "192.0.2.1", "permerror"),
        ("inc", "192.0.2.5", "pass"),
        ("inc", "192.0.2.4", "fail"),
        ("incnone", "192.0.2.1", "permerror"),
        ("inctemp", "192.0.2.1", "temperror"),
        ("redir", "192.0.2.6", "pass"),
        ("redir", "192.0.2.9", "softfail"),
        ("redirnone", "192.0.2.1", "permerror"),
        ("redirall", "192.0.2.1", "neutral"),
        ("amech", "192.0.2.30", "pass"),
        ("amech", "2001:db8::30", "pass"),
        ("amech", "192.0.2.31", "fail"),
        ("acidr", "203.0.113.1", "pass"),
        ("acidr", "203.0.114.1", "fail"),
        ("a6", "2001:db8:1:2::ffff", "pass"),
        ("a6", "2001:db8:1:3::1", "fail"),
        ("mxmech", "192.0.2.51", "pass"),
        ("mxmech", "192.0.2.52", "fail"),
        ("mxmany", "192.0.2.1", "permerror"),
        ("ptr", "192.0.2.20", "pass"),
        ("ptr", "192.0.2.21", "fail"),
        ("ptr", "192.0.2.22", "fail"),
        ("loop", "192.0.2.1", "permerror"),
        ("ten", "192.0.2.1", "fail"),
        ("ten", "198.51.100.10", "pass"),
        ("eleven", "192.0.2.1", "permerror"),
        ("twovoid", "192.0.2.1", "fail"),
        ("threevoid", "192.0.2.1", "permerror"),
        ("x.broken.test", "192.0.2.1", "temperror"),
        ("multistring", "192.0.2.1", "pass"),
        ("pmacro", "192.0.2.20", "pass"),
        ("pmacro", "192.0.2.22", "fail"),
        ("emptyexp", "192.0.2.1", "permerror"),
        ("emptyredirect", "192.0.2.1", "permerror"),
        ("incneutral", "192.0.2.2", "fail"),
        ("trailingdot", "192.0.2.30", "pass"),
        ("nullmx", "192.0.2.1", "fail"),
        ("localhost", "127.0.0.1", "none"),
        ("redirimplicit", "192.0.2.61", "pass"),  # a redirect changes the domain "a" means
        ("redirimplicit", "192.0.2.60", "fail"),
        ("expvoid", "192.0.2.1", "fail"),  # exp= to a missing name is no third void lookup
        ("digitmod", "192.0.2.1", "permerror"),
        ("eqall", "192.0.2.1", "permerror"),
        ("atlimit", "192.0.2.1", "pass"),  # exactly 10 lookups
    ],
)
def test_check_host(resolver: Resolver, name: str, ip: str, expected: str) -> None:
    domain = name if "." in name else f"{name}.spf.test"
    result = host(resolver, ip, domain)
    assert result.result == expected, result
    if expected in ("permerror", "temperror"):
        assert result.reason


def test_macro_in_exists(resolver: Resolver) -> None:
    assert host(resolver, "192.0.2.3", "macro.spf.test", "strong-bad@macro.spf.test").result == "pass"
    assert host(resolver, "192.0.2.4", "macro.spf.test", "strong-bad@macro.spf.test").result == "fail"
    assert host(resolver, "192.0.2.3", "macro.spf.test", "weak-bad@macro.spf.test").result == "fail"


def test_uppercase_macro_is_url_escaped(resolver: Resolver) -> None:
    assert host(resolver, "192.0.2.3", "macroupper.spf.test", "strong-bad@macroupper.spf.test").result == "pass"


def test_explanation(resolver: Resolver) -> None:
    result = host(resolver, "192.0.2.8", "exp.spf.test")
    assert result.result == "fail"
    assert result.explanation == "192.0.2.8 is not one of exp.spf.tests designated mail servers"


def test_limits_counted(resolver: Resolver) -> None:
    assert host(resolver, "192.0.2.1", "ten.spf.test").lookups == 10
    assert "more than 10 DNS lookups" in host(resolver, "192.0.2.1", "eleven.spf.test").reason
    assert "void" in host(resolver, "192.0.2.1", "threevoid.spf.test").reason


def test_helo_and_null_sender(resolver: Resolver) -> None:
    check = asyncio.run(check_spf(resolver, "192.0.2.40", "", "helo.spf.test"))
    assert check.helo is not None and check.helo.result == "pass"
    assert check.mailfrom.result == "pass" and check.mailfrom.sender == "postmaster@helo.spf.test"
    check = asyncio.run(check_spf(resolver, "192.0.2.1", "someone@basic.spf.test", "helo.spf.test"))
    assert check.mailfrom.result == "pass" and check.helo is not None and check.helo.result == "fail"
    check = asyncio.run(check_spf(resolver, "192.0.2.1", "someone@basic.spf.test", "[192.0.2.1]"))
    assert check.helo is None and check.mailfrom.result == "pass"


def test_address_literal_domain_is_none(resolver: Resolver) -> None:
    before = resolver.lookups
    assert host(resolver, "192.0.2.1", "[192.0.2.1]").result == "none"
    assert resolver.lookups == before  # nothing asked


def test_empty_local_part_is_postmaster(resolver: Resolver) -> None:
    check = asyncio.run(check_spf(resolver, "192.0.2.1", "@basic.spf.test", "x.example"))
    assert check.mailfrom.sender == "postmaster@basic.spf.test"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port that swallows every query (a name server that never answers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_timeout_is_temperror(silent_port: int) -> None:
    resolver = Resolver([f"127.0.0.1:{silent_port}"], timeout=0.5)
    result = host(resolver, "192.0.2.1", "basic.spf.test")
    assert result.result == "temperror"
    assert "timeout" in result.reason.lower()


def test_no_client_address_is_none(resolver: Resolver) -> None:
    result = host(resolver, "", "basic.spf.test")
    assert result.result == "none" and "no client IP" in result.reason


def test_redirect_and_include_do_not_carry_explanations(resolver: Resolver) -> None:
    redirected = host(resolver, "192.0.2.8", "redirexp.spf.test")
    assert (redirected.result, redirected.explanation) == ("fail", "")  # the first record's exp= is dropped
    included = host(resolver, "192.0.2.8", "incexp.spf.test")
    assert (included.result, included.explanation) == ("fail", "")  # the included record's exp= is not used


@pytest.mark.parametrize(("helo", "expected"), [("good", "pass"), ("not a host name!", "fail")])
def test_helo_macro(resolver: Resolver, helo: str, expected: str) -> None:
    result = asyncio.run(check_host(resolver, "192.0.2.70", "helomacro.spf.test", "a@helomacro.spf.test", helo=helo))
    assert result.result == expected
