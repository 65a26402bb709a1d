"""DMARC against Knot on loopback: alignment (relaxed and strict), subdomain policy, pct,
missing records, malformed From, DNS failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from dnsserver import KnotServer, txt, zone
from opendkim_tools import available, genkey

from smtpgate.verify.dkim import DKIMResult
from smtpgate.verify.dmarc import aligned, check_dmarc, organizational_domain
from smtpgate.verify.resolver import Resolver
from smtpgate.verify.results import AuthResults
from smtpgate.verify.spf import SPFResult
from smtpgate.verify.verifier import Verifier

pytestmark = pytest.mark.skipif(not available(), reason="opendkim-genkey is not installed (Debian opendkim-tools)")


def message(sender: str, *, extra_from: str = "") -> bytes:
    head = f"From: {sender}\r\n" + (f"From: {extra_from}\r\n" if extra_from else "")
    return (head + "To: bob@example.org\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nHello.\r\n").encode()


@pytest.fixture(scope="module")
def setup(
    knot: Callable[[dict[str, str | None]], KnotServer], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Verifier, dict[str, Path]]:
    directory = tmp_path_factory.mktemp("dmarc")
    key_d, line_d = genkey(directory / "d", "dmarc.test", "s1")
    key_o, line_o = genkey(directory / "o", "elsewhere.test", "s1")
    records = "\n".join(
        [
            f"_dmarc TXT {txt('v=DMARC1; p=reject; sp=quarantine; rua=mailto:r@dmarc.test')}",
            f"@ TXT {txt('v=spf1 ip4:192.0.2.1 -all')}",
            f"mail TXT {txt('v=spf1 ip4:192.0.2.2 -all')}",
            f"_dmarc.strictsub TXT {txt('v=DMARC1; p=reject; adkim=s; aspf=s')}",
            f"bounce.strictsub TXT {txt('v=spf1 ip4:192.0.2.3 -all')}",
            f"_dmarc.half TXT {txt('v=DMARC1; p=reject; pct=50')}",
            f"_dmarc.nopolicy TXT {txt('v=DMARC1; p=none')}",
            f"_dmarc.twice TXT {txt('v=DMARC1; p=reject')}",
            f"_dmarc.twice TXT {txt('v=DMARC1; p=none')}",
            line_d,
        ]
    )
    server = knot(
        {
            "dmarc.test": zone("dmarc.test", records),
            "elsewhere.test": zone("elsewhere.test", f"{line_o}\n@ TXT {txt('v=spf1 ip4:192.0.2.9 -all')}"),
            "broken.test": None,
        }
    )
    return Verifier(Resolver([server.address], timeout=3.0)), {"dmarc.test": key_d, "elsewhere.test": key_o}


def signed(msg: bytes, domain: str, keys: dict[str, Path]) -> bytes:
    return dkim.sign(msg, b"s1", domain.encode(), keys[domain].read_bytes()) + msg


def run(verifier: Verifier, msg: bytes, ip: str, mail_from: str) -> AuthResults:
    return asyncio.run(verifier.check_message(msg, ip=ip, mail_from=mail_from, helo="client.example"))


def test_spf_aligned_passes(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    result = run(verifier, message("alice@dmarc.test"), "192.0.2.1", "bounce@dmarc.test").dmarc
    assert result is not None
    assert (result.result, result.spf_aligned, result.dkim_aligned, result.policy) == ("pass", True, False, "reject")


def test_relaxed_alignment_takes_the_organisational_domain(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    result = run(verifier, message("alice@dmarc.test"), "192.0.2.2", "bounce@mail.dmarc.test").dmarc
    assert result is not None and result.result == "pass" and result.spf_aligned


def test_strict_alignment(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    results = run(verifier, message("alice@strictsub.dmarc.test"), "192.0.2.3", "x@bounce.strictsub.dmarc.test")
    assert results.spf is not None and results.spf.result == "pass"
    assert results.dmarc is not None
    assert (results.dmarc.result, results.dmarc.disposition) == ("fail", "reject")


def test_dkim_aligned_passes_when_spf_fails(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, keys = setup
    msg = signed(message("alice@dmarc.test"), "dmarc.test", keys)
    results = run(verifier, msg, "198.51.100.1", "bounce@dmarc.test")
    assert results.spf is not None and results.spf.result == "fail"
    assert results.dmarc is not None and results.dmarc.result == "pass" and results.dmarc.dkim_aligned


def test_unaligned_dkim_fails(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, keys = setup
    msg = signed(message("alice@dmarc.test"), "elsewhere.test", keys)
    results = run(verifier, msg, "192.0.2.9", "bounce@elsewhere.test")
    assert [r.result for r in results.dkim] == ["pass"]
    assert results.spf is not None and results.spf.result == "pass"
    assert results.dmarc is not None
    assert (results.dmarc.result, results.dmarc.disposition) == ("fail", "reject")


def test_subdomain_policy(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    result = run(verifier, message("alice@news.dmarc.test"), "198.51.100.1", "x@elsewhere.test").dmarc
    assert result is not None
    assert (result.result, result.policy, result.disposition, result.record_domain) == (
        "fail",
        "quarantine",
        "quarantine",
        "dmarc.test",
    )


def test_no_record_and_duplicate_records(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    assert run(verifier, message("a@elsewhere.test"), "192.0.2.1", "").dmarc.result == "none"  # type: ignore[union-attr]
    twice = run(verifier, message("a@twice.dmarc.test"), "198.51.100.1", "a@elsewhere.test").dmarc
    assert twice is not None and twice.record_domain == "dmarc.test"  # falls back to the organisational record


def test_from_must_be_single(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    msg = message("alice@dmarc.test", extra_from="eve@elsewhere.test")
    assert run(verifier, msg, "192.0.2.1", "bounce@dmarc.test").dmarc.result == "permerror"  # type: ignore[union-attr]


def test_dns_failure_is_temperror(setup: tuple[Verifier, dict[str, Path]]) -> None:
    verifier, _ = setup
    result = run(verifier, message("alice@x.broken.test"), "192.0.2.1", "bounce@dmarc.test").dmarc
    assert result is not None and result.result == "temperror" and result.reason


@pytest.mark.parametrize(("sample", "disposition"), [(0.10, "reject"), (0.49, "reject"), (0.50, "quarantine")])
def test_pct_sampling(setup: tuple[Verifier, dict[str, Path]], sample: float, disposition: str) -> None:
    verifier, _ = setup
    spf = SPFResult("fail", "mailfrom", "elsewhere.test", "x@elsewhere.test")
    dkim_results = [DKIMResult("pass", domain="elsewhere.test")]
    result = asyncio.run(
        check_dmarc(verifier.resolver, message("a@half.dmarc.test"), spf, dkim_results, sample=lambda: sample)
    )
    assert (result.result, result.disposition) == ("fail", disposition)


def test_organisational_domain_from_the_public_suffix_list() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("mail.example.com") == "example.com"
    assert organizational_domain("co.uk") == "co.uk"
    assert aligned("mail.example.co.uk", "example.co.uk", "r")
    assert not aligned("mail.example.co.uk", "example.co.uk", "s")
    assert not aligned("example.co.uk", "other.co.uk", "r")
