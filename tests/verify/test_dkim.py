"""DKIM: messages signed by OpenDKIM (and dkimpy for l=), altered, then verified by
smtpgate and by OpenDKIM itself on the same bytes, with keys served by Knot on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from dnsserver import KnotServer, txt, zone
from opendkim_tools import OpenDKIM, available, genkey

from smtpgate.verify.dkim import DKIMResult, check_dkim
from smtpgate.verify.resolver import Resolver
from smtpgate.verify.sign import sign as smtpgate_sign

pytestmark = pytest.mark.skipif(not available(), reason="opendkim is not installed (Debian opendkim, opendkim-tools)")

MESSAGE = (
    b"From: Alice <alice@dkim.test>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: quarterly report\r\n"
    b"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <report-1@dkim.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the numbers  are  in.\r\n"
    b"\r\n"
    b"Alice\r\n"
)


@dataclass
class Env:
    resolver: Resolver
    opendkim: OpenDKIM
    keys: dict[str, Path]


@pytest.fixture(scope="module")
def env(knot: Callable[[dict[str, str | None]], KnotServer], tmp_path_factory: pytest.TempPathFactory) -> Env:
    directory = tmp_path_factory.mktemp("dkim")
    key1, line1 = genkey(directory / "k1", "dkim.test", "sel1", 2048)
    key2, line2 = genkey(directory / "k2", "other.test", "sel2", 1024)
    key3, line3 = genkey(directory / "k3", "dkim.test", "gone", 1024)
    key4, _ = genkey(directory / "k4", "dkim.test", "nokey", 1024)
    key5, line5 = genkey(directory / "k5", "dkim.test", "weak", 512)
    dkim_zone = zone("dkim.test", f"{line1}\n{line5}\ngone._domainkey TXT {txt('v=DKIM1; k=rsa; p=')}\n")
    other_zone = zone("other.test", line2)
    server = knot({"dkim.test": dkim_zone, "other.test": other_zone, "broken.test": None})
    del line3
    return Env(
        Resolver([server.address], timeout=3.0),
        OpenDKIM(directory / "opendkim", server.port),
        {"sel1": key1, "sel2": key2, "gone": key3, "nokey": key4, "weak": key5},
    )


def ours(env: Env, message: bytes) -> list[DKIMResult]:
    return asyncio.run(check_dkim(env.resolver, message, clock_drift=1))


def compare(env: Env, message: bytes) -> list[str]:
    """Our verdict per signature, after checking that OpenDKIM reaches the same one."""
    mine = ours(env, message)
    theirs = env.opendkim.verify(message)
    assert len(theirs) == len(mine), (mine, theirs, env.opendkim.last_output[-2000:])
    verdicts = []
    for result in mine:
        other = theirs[result.signature[:8]]
        assert (result.result == "pass") == (other == "pass"), (result, other)
        same = result.result == other
        key_failure = (other, result.result) == ("fail", "permerror") and result.reason in KEY_FAILURES
        assert same or key_failure, (result, other)
        verdicts.append(result.result)
    return verdicts


# Where the words differ: OpenDKIM says "fail" for a missing or revoked key and for a hash
# the key does not allow, smtpgate "permerror" (RFC 6376: a permanent failure, not a
# changed message).
KEY_FAILURES = (
    "no key for signature",
    "key revoked",
    "the key does not allow this hash algorithm",
    "rsa-sha1 signatures are not accepted (RFC 8301)",
)


def sign(env: Env, message: bytes, selector: str = "sel1", domain: str = "dkim.test", **kw: object) -> bytes:
    return env.opendkim.sign(message, domain, selector, env.keys[selector], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("canon", ["simple/simple", "relaxed/relaxed", "relaxed/simple", "simple/relaxed"])
def test_intact_message_passes(env: Env, canon: str) -> None:
    signed = sign(env, MESSAGE, canonicalization=canon)
    assert compare(env, signed) == ["pass"]


@pytest.mark.parametrize(
    ("canon", "change", "expected"),
    [
        # header whitespace: relaxed header canonicalisation ignores it, simple does not
        ("relaxed/simple", (b"Subject: quarterly report", b"Subject:   quarterly\r\n  report"), "pass"),
        ("simple/simple", (b"Subject: quarterly report", b"Subject:   quarterly\r\n  report"), "fail"),
        # header name case: relaxed lower-cases names
        ("relaxed/simple", (b"Subject: quarterly", b"SUBJECT: quarterly"), "pass"),
        ("simple/simple", (b"Subject: quarterly", b"SUBJECT: quarterly"), "fail"),
        # a signed header's value changed
        ("relaxed/relaxed", (b"quarterly report", b"annual report"), "fail"),
        # body whitespace inside a line: relaxed body canonicalisation ignores it
        ("relaxed/relaxed", (b"numbers  are  in", b"numbers are in"), "pass"),
        ("relaxed/simple", (b"numbers  are  in", b"numbers are in"), "fail"),
        # trailing empty lines are ignored by both body canonicalisations
        ("relaxed/simple", (b"Alice\r\n", b"Alice\r\n\r\n\r\n"), "pass"),
        ("simple/simple", (b"Alice\r\n", b"Alice\r\n\r\n\r\n"), "pass"),
        # body text changed
        ("relaxed/relaxed", (b"Hello Bob", b"Hello Eve"), "fail"),
        # an unsigned header added: no harm
        ("relaxed/simple", (b"\r\n\r\nHello", b"\r\nX-Spam: no\r\n\r\nHello"), "pass"),
    ],
)
def test_altered_message(env: Env, canon: str, change: tuple[bytes, bytes], expected: str) -> None:
    signed = sign(env, MESSAGE, canonicalization=canon)
    old, new = change
    assert old in signed
    assert compare(env, signed.replace(old, new, 1)) == [expected]


def test_second_from_header_breaks_the_signature(env: Env) -> None:
    signed = sign(env, MESSAGE)
    forged = signed.replace(b"To: bob", b"From: Mallory <m@evil.test>\r\nTo: bob", 1)
    assert compare(env, forged) == ["fail"]


def test_body_length_limit(env: Env) -> None:
    private = env.keys["sel1"].read_bytes()
    header = dkim.sign(MESSAGE, b"sel1", b"dkim.test", private, length=True)
    signed = header + MESSAGE
    assert b"l=" in header
    assert compare(env, signed) == ["pass"]
    assert compare(env, signed + b"-- \r\nappended by a mailing list\r\n") == ["pass"]
    assert compare(env, signed.replace(b"Hello Bob", b"Hello Eve")) == ["fail"]


def test_multiple_signatures_each_judged(env: Env) -> None:
    first = sign(env, MESSAGE)
    both = sign(env, first, selector="sel2", domain="other.test")
    assert compare(env, both) == ["pass", "pass"]
    # a signature by a key that was revoked and one whose key is missing, on top
    three = sign(env, sign(env, both, selector="gone"), selector="nokey")
    verdicts = compare(env, three)
    assert verdicts == ["permerror", "permerror", "pass", "pass"]
    results = ours(env, three)
    assert [r.reason for r in results[:2]] == ["no key for signature", "key revoked"]
    assert {r.domain for r in results} == {"dkim.test", "other.test"}


def test_expired_signature(env: Env) -> None:
    signed = sign(env, MESSAGE, ttl=1)
    assert b"x=" in signed
    time.sleep(3.2)
    assert compare(env, signed) == ["permerror"]
    assert ours(env, signed)[0].reason == "signature expired"


def test_unsigned_message(env: Env) -> None:
    assert ours(env, MESSAGE) == []


def test_key_lookup_failure_is_temperror(env: Env) -> None:
    signed = sign(env, MESSAGE, selector="sel2", domain="broken.test")
    result = ours(env, signed)[0]
    assert result.result == "temperror"
    assert result.domain == "broken.test"


@pytest.mark.parametrize("canon", [("relaxed", "relaxed"), ("simple", "simple")])
def test_our_signature_verified_by_opendkim(env: Env, canon: tuple[str, str]) -> None:
    signed = smtpgate_sign(MESSAGE, "sel1", "dkim.test", env.keys["sel1"], canonicalization=canon)
    assert compare(env, signed) == ["pass"]
    with_pem_text = smtpgate_sign(MESSAGE, "sel2", "other.test", env.keys["sel2"].read_text())
    assert compare(env, with_pem_text) == ["pass"]


def test_signing_errors(env: Env) -> None:
    with pytest.raises(ValueError):
        smtpgate_sign(MESSAGE, "sel1", "dkim.test", b"-----BEGIN RSA PRIVATE KEY-----\nbroken\n")
    with pytest.raises(ValueError):
        smtpgate_sign(MESSAGE, "sel1", "dkim.test", env.keys["sel1"], canonicalization=("loose", "simple"))


def test_key_under_1024_bits_is_refused(env: Env) -> None:
    # OpenDKIM will not sign with it: dkimpy signs
    signed = dkim.sign(MESSAGE, b"weak", b"dkim.test", env.keys["weak"].read_bytes()) + MESSAGE
    assert compare(env, signed) == ["policy"]
    assert "too small" in ours(env, signed)[0].reason


def test_rsa_sha1_is_not_accepted(env: Env) -> None:
    # the key record of opendkim-genkey says h=sha256; RFC 8301 refuses SHA-1 anyway
    private = env.keys["sel1"].read_bytes()
    signed = dkim.sign(MESSAGE, b"sel1", b"dkim.test", private, signature_algorithm=b"rsa-sha1") + MESSAGE
    assert compare(env, signed) == ["permerror"]
    assert "RFC 8301" in ours(env, signed)[0].reason


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"s=sel1;", b"s=sel1; i=@evil.test;"),
        (b"c=relaxed/simple;", b"c=fancy/simple;"),
        (b"a=rsa-sha256;", b"a=rsa-sha512;"),
        (b"v=1;", b"v=2;"),
    ],
)
def test_malformed_signature(env: Env, old: bytes, new: bytes) -> None:
    signed = sign(env, MESSAGE).replace(old, new, 1)
    assert compare(env, signed) == ["permerror"]
