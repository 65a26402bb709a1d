"""The system resolver's answers are kept a while (REVERSE_CACHE_SECONDS, at most
REVERSE_CACHE_SIZE addresses); a custom resolver is asked every time."""

from __future__ import annotations

import socket

import pytest

from smtpgate import connection, opening
from smtpgate.opening import _RecentNames, recent_names
from support import Recorder


@pytest.fixture(autouse=True)
def fresh_cache():
    recent_names.clear()
    yield
    recent_names.clear()


def _names_seen(start_server, raw_client, clients: int, **options) -> list[str]:
    names = Recorder()
    running = start_server(disable_reverse_lookup=False, on_connect=lambda s: names.add(s.client_hostname), **options)
    for _ in range(clients):
        client = raw_client(running.port)
        assert client.reply()[0] == 220
        client.command("QUIT")
    return names.wait_for(clients)


def test_the_system_resolvers_answer_is_reused(start_server, raw_client):
    try:
        expected = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0].rstrip(".").lower()
    except socket.gaierror:
        expected = "[127.0.0.1]"
    names = _names_seen(start_server, raw_client, 3)
    assert names == [expected] * 3
    assert recent_names.get("127.0.0.1") == expected  # kept for the next client


def test_a_custom_resolver_is_asked_every_time(start_server, raw_client):
    asked = Recorder()

    def resolver(address: str) -> str:
        asked.add(address)
        return f"host{len(asked)}.example"

    names = _names_seen(start_server, raw_client, 3, resolver=resolver)
    assert names == ["host1.example", "host2.example", "host3.example"]
    assert recent_names.get("127.0.0.1") is None


def test_answers_expire(monkeypatch):
    names = _RecentNames()
    monkeypatch.setattr(opening, "REVERSE_CACHE_SECONDS", -1.0)
    names.put("192.0.2.1", "old.example")
    assert names.get("192.0.2.1") is None
    monkeypatch.setattr(opening, "REVERSE_CACHE_SECONDS", 60.0)
    names.put("192.0.2.1", "new.example")
    assert names.get("192.0.2.1") == "new.example"


def test_the_oldest_address_goes_first_when_full(monkeypatch):
    monkeypatch.setattr(opening, "REVERSE_CACHE_SIZE", 3)
    names = _RecentNames()
    for n in range(1, 5):
        names.put(f"192.0.2.{n}", f"h{n}.example")
    assert names.get("192.0.2.1") is None
    assert [names.get(f"192.0.2.{n}") for n in (2, 3, 4)] == ["h2.example", "h3.example", "h4.example"]
    names.put("192.0.2.2", "again.example")  # an update counts as new
    names.put("192.0.2.5", "h5.example")
    assert names.get("192.0.2.3") is None and names.get("192.0.2.2") == "again.example"


def _names_at_mail(start_server, raw_client, clients: int, **options) -> list[str]:
    """Without on_connect, a kept answer lets the greeting go out from connection_made."""
    names = Recorder()
    running = start_server(disable_reverse_lookup=False, on_mail_from=lambda a, s: names.add(s.client_hostname),
                           **options)  # fmt: skip
    for _ in range(clients):
        client = raw_client(running.port)
        assert client.reply()[0] == 220
        client.command("EHLO client.example")
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250
        client.command("QUIT")
    return names.wait_for(clients)


def test_a_kept_answer_is_the_sessions_name_when_greeted_at_once(start_server, raw_client, monkeypatch):
    try:
        expected = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0].rstrip(".").lower()
    except socket.gaierror:
        expected = "[127.0.0.1]"
    assert _names_at_mail(start_server, raw_client, 3) == [expected] * 3
    recent_names.put("127.0.0.1", "kept.example")
    looked_up = Recorder()

    async def lookup(ctx, address, log):  # type: ignore[no-untyped-def]
        looked_up.add(address)
        return "looked-up.example"

    # (compiled code calls reverse_lookup directly: the patch is seen by the pure build only)
    monkeypatch.setattr(connection, "reverse_lookup", lookup)
    assert _names_at_mail(start_server, raw_client, 2) == ["kept.example"] * 2
    assert len(looked_up) == 0  # greeted from connection_made, with no lookup to wait for


def test_a_custom_resolver_is_asked_every_time_without_on_connect(start_server, raw_client):
    recent_names.put("127.0.0.1", "kept.example")  # (only the system resolver's answers count)
    asked = Recorder()

    def resolver(address: str) -> str:
        asked.add(address)
        return f"host{len(asked)}.example"

    names = _names_at_mail(start_server, raw_client, 2, resolver=resolver)
    assert names == ["host1.example", "host2.example"]
