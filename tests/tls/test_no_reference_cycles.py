"""A finished session leaves no reference cycle among smtpgate's objects: the connection,
its protocol, transport, TLS layer, task and decisions are freed by reference counting
when the session ends, not left for the garbage collector (whose passes grow with every
cycle left behind: about 8 % of a connection's instructions before this was so)."""

from __future__ import annotations

import collections
import gc
import time
import weakref

import pytest
from tls_support import client_context, send_message, starttls, tls_pair

from smtpgate.tls import TLSContexts, TLSOptions

SESSIONS = 10


def smtpgate_garbage(running, sessions) -> collections.Counter[str]:  # type: ignore[no-untyped-def]
    """What gc finds unreachable among smtpgate's objects after ``sessions()`` ran, by type,
    counting the types found once per session or more (an earlier test's server may still
    be letting go of its own few objects)."""
    gc.collect()
    gc.disable()
    try:
        sessions()
        deadline = time.monotonic() + 10
        while list(running.server.connections) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not list(running.server.connections), "the sessions did not end"
        time.sleep(0.2)  # the session tasks' last steps, the transports' connection_lost
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = collections.Counter(
            type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("smtpgate")
        )
        return collections.Counter({name: count for name, count in found.items() if count >= SESSIONS})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_sessions_leave_no_cycles(start_server, raw_client, certs, mx, tls):
    async def on_data(stream, session):
        async for _ in stream:
            pass

    running = start_server(on_data=on_data, **mx)

    def sessions() -> None:
        for _ in range(SESSIONS):
            client = raw_client(running.port)
            if tls:
                starttls(client, client_context(certs))
                assert client.command("EHLO client.test")[0] == 250
            else:
                assert client.reply()[0] == 220
                assert client.command("EHLO client.test")[0] == 250
            send_message(client)
            assert client.command("QUIT")[0] == 221
            client.close()

    assert smtpgate_garbage(running, sessions) == collections.Counter()


def test_a_client_that_vanishes_leaves_no_cycles(start_server, raw_client, mx):
    running = start_server(**mx)

    def sessions() -> None:
        for _ in range(SESSIONS):
            client = raw_client(running.port)
            assert client.reply()[0] == 220
            client.send("MAIL FROM:<a@example.com>\r\n")
            client.close()  # gone mid-session, without QUIT

    assert smtpgate_garbage(running, sessions) == collections.Counter()


def test_tls_contexts_are_freed_without_the_collector(certs, mx):
    """The contexts' SNI callback holds its owner weakly: no cycle through the SSLContext."""
    contexts = TLSContexts(TLSOptions(**mx), {"a.example": tls_pair(certs.server["a.example"])}, "mx.test")
    assert contexts.context.sni_callback is not None
    gone = weakref.ref(contexts)
    gc.disable()
    try:
        del contexts
        assert gone() is None
    finally:
        gc.enable()
