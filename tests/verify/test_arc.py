"""ARC chains (RFC 8617) sealed by dkimpy's signer, validated through the asynchronous
resolver against Knot: one hop, two hops, a modified body, a key that cannot be fetched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from dnsserver import KnotServer, zone
from opendkim_tools import available, genkey

from smtpgate.verify.arc import ARCResult, check_arc
from smtpgate.verify.resolver import Resolver

pytestmark = pytest.mark.skipif(not available(), reason="opendkim-genkey is not installed (Debian opendkim-tools)")

MESSAGE = b"From: alice@origin.test\r\nTo: list@lists.test\r\nSubject: hi\r\n\r\nHello list.\r\n"


@pytest.fixture(scope="module")
def setup(
    knot: Callable[[dict[str, str | None]], KnotServer], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Resolver, dict[str, Path]]:
    directory = tmp_path_factory.mktemp("arc")
    key_l, line_l = genkey(directory / "l", "lists.test", "arc1")
    key_f, line_f = genkey(directory / "f", "forward.test", "arc2")
    key_b, _ = genkey(directory / "b", "broken.test", "arc3")
    server = knot(
        {"lists.test": zone("lists.test", line_l), "forward.test": zone("forward.test", line_f), "broken.test": None}
    )
    return Resolver([server.address], timeout=3.0), {"lists.test": key_l, "forward.test": key_f, "broken.test": key_b}


def seal(message: bytes, domain: str, selector: str, key: Path) -> bytes:
    chain = "; arc=pass" if b"ARC-Seal:" in message else ""  # the sealer's verdict on the chain so far
    results = f"Authentication-Results: mx.{domain}; spf=pass smtp.mailfrom=alice@origin.test{chain}\r\n"
    with_results = results.encode() + message
    headers = dkim.arc_sign(
        with_results,
        selector.encode(),
        domain.encode(),
        key.read_bytes(),
        f"mx.{domain}".encode(),
        include_headers=[b"from", b"to", b"subject"],
    )
    return b"".join(headers) + with_results


def check(resolver: Resolver, message: bytes) -> ARCResult:
    return asyncio.run(check_arc(resolver, message))


def test_no_arc_sets(setup: tuple[Resolver, dict[str, Path]]) -> None:
    resolver, _ = setup
    assert check(resolver, MESSAGE) == ARCResult("none")


def test_one_and_two_hops(setup: tuple[Resolver, dict[str, Path]]) -> None:
    resolver, keys = setup
    once = seal(MESSAGE, "lists.test", "arc1", keys["lists.test"])
    result = check(resolver, once)
    assert (result.result, result.instances, result.domain) == ("pass", 1, "lists.test")
    twice = seal(once, "forward.test", "arc2", keys["forward.test"])
    result = check(resolver, twice)
    assert (result.result, result.instances, result.domain) == ("pass", 2, "forward.test")


def test_modified_after_sealing(setup: tuple[Resolver, dict[str, Path]]) -> None:
    resolver, keys = setup
    once = seal(MESSAGE, "lists.test", "arc1", keys["lists.test"])
    result = check(resolver, once.replace(b"Hello list", b"Hello spam"))
    assert result.result == "fail" and result.reason


def test_key_lookup_failure_is_temperror(setup: tuple[Resolver, dict[str, Path]]) -> None:
    resolver, keys = setup
    once = seal(MESSAGE, "broken.test", "arc3", keys["broken.test"])
    assert check(resolver, once).result == "temperror"
