"""The asynchronous resolver against Knot on loopback: answers, void answers (no such name,
no such record) as empty lists, failures (SERVFAIL, REFUSED, no answer at all) as
DNSTempError; several name servers; the cache."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from dnsserver import KnotServer, txt, zone

from smtpgate.verify.resolver import DNSTempError, Resolver

RECORDS = "\n".join(
    [
        f"@ TXT {txt('first')}",
        f"@ TXT {txt('x' * 300)}",
        "@ A 192.0.2.1",
        "@ AAAA 2001:db8::1",
        "@ MX 20 b.mx.res.test.",
        "@ MX 10 a.mx.res.test.",
        "onlya A 192.0.2.2",
    ]
)


@pytest.fixture(scope="module")
def server(knot: Callable[[dict[str, str | None]], KnotServer]) -> KnotServer:
    reverse = zone("2.0.192.in-addr.arpa", "1 PTR res.test.")
    return knot({"res.test": zone("res.test", RECORDS), "2.0.192.in-addr.arpa": reverse, "broken.test": None})


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_answers(server: KnotServer) -> None:
    resolver = Resolver([server.address], timeout=3)
    assert sorted(run(resolver.txt("res.test"))) == ["first", "x" * 300]  # type: ignore[type-var]
    assert run(resolver.a("res.test")) == ["192.0.2.1"]
    assert run(resolver.aaaa("RES.test.")) == ["2001:db8::1"]
    assert run(resolver.mx("res.test")) == [(10, "a.mx.res.test"), (20, "b.mx.res.test")]
    assert run(resolver.ptr("192.0.2.1")) == ["res.test"]


def test_void_answers_are_empty(server: KnotServer) -> None:
    resolver = Resolver([server.address], timeout=3)
    assert run(resolver.txt("nothing.res.test")) == []  # NXDOMAIN
    assert run(resolver.txt("onlya.res.test")) == []  # no TXT record
    assert run(resolver.a("bad..name.res.test")) == []  # malformed name
    assert run(resolver.ptr("not an address")) == []


@pytest.mark.parametrize("name", ["x.broken.test", "outside.example"])
def test_failures_raise(server: KnotServer, name: str) -> None:
    resolver = Resolver([server.address], timeout=3)
    with pytest.raises(DNSTempError, match="DNS failure"):
        run(resolver.txt(name))  # SERVFAIL (zone failed to load), REFUSED (not served)


def test_silent_server_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = Resolver([f"127.0.0.1:{silent.getsockname()[1]}"], timeout=0.3)
        with pytest.raises(DNSTempError, match="timeout"):
            run(resolver.a("res.test"))


def test_a_second_server_answers_when_the_first_is_silent(server: KnotServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent_address = ("127.0.0.1", int(silent.getsockname()[1]))
        resolver = Resolver([silent_address, server.address], timeout=3)
        assert resolver.nameservers == [f"127.0.0.1:{silent_address[1]}", server.address]
        answers = run(resolver.a("res.test"))
    assert answers == ["192.0.2.1"]


def test_cache_keeps_answers_for_their_ttl(tmp_path_factory: pytest.TempPathFactory) -> None:
    own = KnotServer(tmp_path_factory.mktemp("knot-cache"), {"cache.test": zone("cache.test", "@ A 192.0.2.9")})
    own.start()
    try:
        cached = Resolver([own.address], timeout=0.5)
        uncached = Resolver([own.address], timeout=0.5, cache_size=0)
        assert run(cached.a("cache.test")) == ["192.0.2.9"]
        assert run(uncached.a("cache.test")) == ["192.0.2.9"]
    finally:
        own.stop()
    assert run(cached.a("cache.test")) == ["192.0.2.9"]  # the server is gone: from the cache
    with pytest.raises(DNSTempError):
        run(uncached.a("cache.test"))


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        Resolver(["dns.example"])
    with pytest.raises(ValueError):
        Resolver([])
    with pytest.raises(ValueError):
        Resolver(["127.0.0.1"], timeout=0)
