"""Pure parts: SPF record parsing and macros (RFC 7208 section 7.4's examples), DMARC
record parsing, and the Authentication-Results header read back by an independent parser
(the authres package). Hypothesis for the parsers."""

from __future__ import annotations

import ipaddress

import authres
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.verify.arc import ARCResult
from smtpgate.verify.dkim import DKIMResult
from smtpgate.verify.dmarc import DMARCResult, DMARCSyntaxError, parse_dmarc_record
from smtpgate.verify.dnsbl import parse_blocklist, query_name
from smtpgate.verify.resolver import parse_nameserver
from smtpgate.verify.results import AuthResults, remove_own_results
from smtpgate.verify.spf import SPFResult
from smtpgate.verify.spfrecord import MacroValues, SPFSyntaxError, expand, expand_domain, parse_record

RFC_SENDER = "strong-bad@email.example.com"


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%%%_%-", "% %20"),
        ("%{S}", "strong-bad%40email.example.com"),
    ],
)
def test_macro_examples_of_rfc_7208(macro: str, expected: str) -> None:
    values = MacroValues(RFC_SENDER, "email.example.com", ipaddress.ip_address("192.0.2.3"))
    assert expand(macro, values) == expected


def test_ipv6_macro() -> None:
    values = MacroValues(RFC_SENDER, "email.example.com", ipaddress.ip_address("2001:db8::cb01"))
    assert expand("%{ir}.%{v}._spf.%{d2}", values) == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )


def test_long_domain_is_shortened_from_the_left() -> None:
    values = MacroValues("x@" + "a" * 60 + ".example.com", "d.example", ipaddress.ip_address("192.0.2.3"))
    domain = expand_domain("%{o}.%{o}.%{o}.%{o}.%{o}", values)
    assert len(domain) <= 253 and domain.endswith(".example.com")


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 ip4:1.2.3.4/33",
        "v=spf1 ip6:::1/129",
        "v=spf1 a:example.com/",
        "v=spf1 mx//",
        "v=spf1 include",
        "v=spf1 exists:",
        "v=spf1 all:foo",
        "v=spf1 redirect=a.example redirect=b.example",
        "v=spf1 exp=a.example exp=b.example",
        "v=spf1 a:%{z}.example",
        "v=spf1 a:%.example",
        "v=spf1 a:foo",
        "v=spf1 ip4:01.2.3.4",
        "v=spf1 ip4:192.0.2.1/032",
        "v=spf1 a//0128",
        "v=spf1 -all.",
        "v=spf1 ~",
        "v=spf1 a:ex\u00e4mple.com",
    ],
)
def test_syntax_errors(record: str) -> None:
    with pytest.raises(SPFSyntaxError):
        parse_record(record)


def test_parsed_terms() -> None:
    record = parse_record("v=spf1 ~a:mail.example.com/24//64 -mx ?ip4:192.0.2.0/24 include:_spf.example.org all")
    assert [str(m) for m in record.mechanisms] == [
        "~a:mail.example.com/24//64",
        "-mx",
        "?ip4:192.0.2.0/24",
        "include:_spf.example.org",
        "all",
    ]
    assert [m.result for m in record.mechanisms] == ["softfail", "fail", "neutral", "pass", "pass"]


_term = st.one_of(
    st.sampled_from(["all", "-all", "~all", "mx", "a", "ptr", "a/24", "mx//64", "a:example.com/16//48"]),
    st.builds(lambda ip, n: f"ip4:{ip}/{n}", st.ip_addresses(v=4), st.integers(0, 32)),
    st.builds(lambda ip, n: f"ip6:{ip}/{n}", st.ip_addresses(v=6), st.integers(0, 128)),
    st.builds(lambda d: f"include:{d}.example", st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)),
    st.builds(
        lambda q, d: f"{q}exists:%{{i}}.{d}.example",
        st.sampled_from("+-~?"),
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    ),
)


@given(st.lists(_term, max_size=12))
@settings(max_examples=200, deadline=None)
def test_valid_records_round_trip(terms: list[str]) -> None:
    record = parse_record("v=spf1 " + " ".join(terms))
    again = parse_record("v=spf1 " + " ".join(str(m) for m in record.mechanisms))
    assert again == record


@given(st.text(max_size=120))
@settings(max_examples=500, deadline=None)
def test_spf_parser_never_crashes(text: str) -> None:
    try:
        parse_record("v=spf1 " + text)
    except SPFSyntaxError:
        pass


@given(st.text(max_size=120))
@settings(max_examples=500, deadline=None)
def test_dmarc_parser_never_crashes(text: str) -> None:
    try:
        record = parse_dmarc_record("v=DMARC1; " + text)
    except DMARCSyntaxError:
        return
    assert record.policy in ("none", "quarantine", "reject")
    assert 0 <= record.pct <= 100


def test_dmarc_records() -> None:
    record = parse_dmarc_record("v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=r; pct=20; rua=mailto:x@y")
    assert (record.policy, record.subdomain_policy, record.adkim, record.aspf, record.pct) == (
        "quarantine",
        "reject",
        "s",
        "r",
        20,
    )
    assert parse_dmarc_record("v=DMARC1; rua=mailto:x@y").policy == "none"  # no p=, but rua=
    for bad in ("v=DMARC2; p=reject", "p=reject; v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC1"):
        with pytest.raises(DMARCSyntaxError):
            parse_dmarc_record(bad)


def parse_header(text: str) -> authres.AuthenticationResultsHeader:
    return authres.AuthenticationResultsHeader.parse(text.rstrip("\r\n"))


def test_header_read_back_by_authres() -> None:
    results = AuthResults(
        spf=SPFResult("pass", "mailfrom", "example.com", "bounce@example.com"),
        helo=SPFResult("none", "helo", "client.example.net", "postmaster@client.example.net"),
        dkim=(
            DKIMResult("pass", "example.com", "s1", "@example.com", "rsa-sha256", "AbCdEfGh1234"),
            DKIMResult("fail", "other.example", "s2", "@other.example", "rsa-sha256", "zz+/09xy", "body hash mismatch"),
        ),
        dmarc=DMARCResult("pass", "example.com", "reject", "none", True, True, "example.com"),
        arc=ARCResult("none"),
    )
    text = results.header("mx.example.org")
    assert text.endswith("\r\n") and all(len(line) < 200 for line in text.split("\r\n"))
    header = parse_header(text)
    assert header.authserv_id == "mx.example.org"
    found = [(r.method, r.result) for r in header.results]
    assert found == [
        ("spf", "pass"),
        ("spf", "none"),
        ("dkim", "pass"),
        ("dkim", "fail"),
        ("dmarc", "pass"),
        ("arc", "none"),
    ]
    assert "header.i=@example.com " in text  # a pvalue may be "@domain" unquoted
    props = {(p.type, p.name): p.value for p in header.results[3].properties}
    assert props[("header", "d")] == "other.example" and props[("header", "b")] == "zz+/09xy"
    assert header.results[3].reason == "body hash mismatch"
    assert {(p.type, p.name): p.value for p in header.results[0].properties} == {
        ("smtp", "mailfrom"): "bounce@example.com"
    }


def test_nothing_checked_is_none() -> None:
    assert AuthResults().header("mx.test") == "Authentication-Results: mx.test; none\r\n"


_reason = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(_reason, _label, st.sampled_from(["pass", "fail", "softfail", "temperror", "permerror", "neutral", "none"]))
@settings(max_examples=300, deadline=None)
def test_any_reason_survives_the_header(reason: str, label: str, result: str) -> None:
    spf = SPFResult(result, "mailfrom", f"{label}.example", f"user@{label}.example", reason=reason)
    header = parse_header(AuthResults(spf=spf).header("mx.test"))
    assert header.results[0].result == result
    assert (header.results[0].reason or "") == reason.replace("\\", "/").replace('"', "'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_nameserver_syntax(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1", "1.2.3.4:70000"])
def test_bad_nameservers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(text)


def test_blocklist_specs_and_query_names() -> None:
    assert parse_blocklist("zen.example=3").weight == 3.0
    assert parse_blocklist("bl.example.").zone == "bl.example"
    with pytest.raises(ValueError):
        parse_blocklist("nodot")
    with pytest.raises(ValueError):
        parse_blocklist("bl.example=heavy")
    assert query_name("192.0.2.3", "bl.example") == "3.2.0.192.bl.example"
    assert query_name("::ffff:192.0.2.3", "bl.example") == "3.2.0.192.bl.example"
    assert query_name("2001:db8::1", "bl.example").startswith("1.0.0.0.")


def test_forged_results_for_our_id_are_removed() -> None:
    message = (
        b"Authentication-Results: MX.test (forged);\r\n\tdkim=pass header.d=bank.test\r\n"
        b"Authentication-Results: upstream.example; spf=pass smtp.mailfrom=a@b.example\r\n"
        b"Subject: hi\r\n"
        b"Authentication-Results: mx.test 1; dmarc=pass\r\n"
        b"\r\n"
        b"Authentication-Results: mx.test; in the body, kept\r\n"
    )
    assert remove_own_results(message, "mx.test") == (
        b"Authentication-Results: upstream.example; spf=pass smtp.mailfrom=a@b.example\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"Authentication-Results: mx.test; in the body, kept\r\n"
    )
    untouched = b"Subject: hi\r\n\r\nbody\r\n"
    assert remove_own_results(untouched, "mx.test") is untouched


def test_dkim_hash_restrictions() -> None:
    from smtpgate.verify.dkim import _algorithm_problem

    sha256 = {b"a": b"rsa-sha256"}
    assert _algorithm_problem(sha256, "v=DKIM1; p=AAAA") is None
    assert _algorithm_problem(sha256, "v=DKIM1; h=sha1:sha256; p=AAAA") is None
    assert _algorithm_problem(sha256, "v=DKIM1; h=sha1; p=AAAA") == (
        "permerror",
        "the key does not allow this hash algorithm",
    )
    assert _algorithm_problem({b"a": b"rsa-sha1"}, "v=DKIM1; p=AAAA") is not None


def test_signatures_beyond_ten_are_one_neutral_entry() -> None:
    from smtpgate.verify.dkim import KeyCache, verify_signatures

    head = b"".join(
        b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s%d; h=from; bh=AA==; b=AA==\r\n" % i for i in range(25)
    )
    results = verify_signatures(head + b"From: a@x.test\r\n\r\nhi\r\n", KeyCache())
    assert len(results) == 11
    assert [r.reason for r in results[:10]] == ["no key for signature"] * 10
    assert (results[10].result, results[10].reason) == ("neutral", "15 more signatures not checked")


_macro = st.builds(
    lambda letter, digits, reverse, delims: "%{" + letter + digits + reverse + delims + "}",
    st.sampled_from("slodiphvSLODIPHV"),
    st.sampled_from(["", "1", "2", "5", "12"]),
    st.sampled_from(["", "r", "R"]),
    st.text(alphabet=".-+,/_=", max_size=3),
)
_macro_string = st.lists(
    st.one_of(_macro, st.sampled_from(["%%", "%_", "%-"]), st.from_regex(r"[a-z0-9.\-]{1,8}", fullmatch=True)),
    max_size=8,
).map("".join)


@given(_macro_string, st.from_regex(r"[a-z0-9.+\-]{1,12}@[a-z0-9]{1,10}\.example", fullmatch=True), st.ip_addresses())
@settings(max_examples=300, deadline=None)
def test_macro_expansion_fills_every_macro(
    text: str, sender: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    values = MacroValues(sender, sender.rpartition("@")[2], ip, helo="mail.example.org")
    assert "%{" not in expand(text, values)
    domain = expand_domain(text + ".example.com", values)
    assert len(domain) <= 253 or "." not in domain
