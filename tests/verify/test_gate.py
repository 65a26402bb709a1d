"""AuthGate on a real SMTPServer (smtplib as the client, Knot as the DNS): the header on
every message by default; under enforce SPF fail at RCPT (550 5.7.23), DMARC reject at the
end of DATA (550 5.7.1), DNS failures and timeouts answered 451 4.7.x, never 250; DNS
blocklists at connect or RCPT (554 5.7.1 with the list's text)."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import authres
import pytest
from dnsserver import KnotServer, txt, zone

from smtpgate.verify import DNSBL, AuthGate, Policy, Resolver, Verifier

ZONES = {
    "ok.test": f"@ TXT {txt('v=spf1 ip4:127.0.0.1 -all')}\n_dmarc TXT {txt('v=DMARC1; p=reject')}",
    "deny.test": f"@ TXT {txt('v=spf1 -all')}\n_dmarc TXT {txt('v=DMARC1; p=reject')}",
    "soft.test": f"@ TXT {txt('v=spf1 ~all')}\n_dmarc TXT {txt('v=DMARC1; p=quarantine')}",
}
LISTED = "1.0.0.127 A 127.0.0.2\n1.0.0.127 TXT " + txt("127.0.0.1 is listed, see https://bl.test/")


@pytest.fixture(scope="module")
def dns_server(knot: Callable[[dict[str, str | None]], KnotServer]) -> KnotServer:
    return knot(
        {
            **{origin: zone(origin, records) for origin, records in ZONES.items()},
            "bl.test": zone("bl.test", LISTED),
            "light.test": zone("light.test", "1.0.0.127 A 127.0.0.3"),
            "half.test": zone("half.test", "1.0.0.127 A 127.0.0.4"),
            "xc.test": zone("xc.test", "66.2.0.192 A 127.0.0.2\n66.2.0.192 TXT " + txt("192.0.2.66 is listed")),
            "broken.test": None,
        }
    )


@pytest.fixture
def resolver(dns_server: KnotServer) -> Resolver:
    return Resolver([dns_server.address], timeout=3.0)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, Any]] = []

    async def on_data(self, stream: Any, session: Any) -> str:
        self.messages.append((await stream.read(), session))
        return "Stored"


def message(author: str) -> bytes:
    return f"From: {author}\r\nTo: bob@mx.test\r\nSubject: hi\r\n\r\nHello.\r\n".encode()


def serve(start_server: Callable[..., Any], gate: AuthGate, inbox: Inbox) -> Any:
    return start_server(**gate.handlers(on_data=inbox.on_data))


def send(running: Any, mail_from: str, author: str) -> None:
    with smtplib.SMTP(running.host, running.port, timeout=30) as client:
        client.ehlo("client.ok.test")
        client.sendmail(mail_from, ["bob@mx.test"], message(author))


def results_of(data: bytes) -> dict[str, str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    fields = head.replace("\r\n\t", " ").split("\r\n")
    found = [f for f in fields if f.startswith("Authentication-Results:")]
    assert len(found) == 1
    header = authres.AuthenticationResultsHeader.parse(found[0])
    assert header.authserv_id == "mx.test"
    return {
        r.method + ("/helo" if any(p.name == "helo" for p in r.properties) else ""): r.result for r in header.results
    }


def test_default_only_adds_the_header(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    running = serve(start_server, AuthGate(Verifier(resolver), authserv_id="mx.test"), inbox)
    send(running, "a@deny.test", "a@deny.test")
    ((data, session),) = inbox.messages
    assert results_of(data) == {"spf": "fail", "spf/helo": "none", "dkim": "none", "dmarc": "fail", "arc": "none"}
    assert data.endswith(message("a@deny.test"))
    assert session.auth_results.dmarc.disposition == "reject"


def test_enforce_refuses_spf_fail_at_rcpt(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", policy=Policy(enforce=True))
    running = serve(start_server, gate, inbox)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(running, "a@deny.test", "a@ok.test")
    code, text = refused.value.recipients["bob@mx.test"]
    assert code == 550 and text.startswith(b"5.7.23 ")
    assert inbox.messages == []


def test_enforce_refuses_dmarc_reject_at_end_of_data(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", policy=Policy(enforce=True))
    running = serve(start_server, gate, inbox)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(running, "bounce@ok.test", "a@deny.test")
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1 ")
    assert b"deny.test" in refused.value.smtp_error
    assert inbox.messages == []
    send(running, "bounce@ok.test", "a@ok.test")  # aligned: accepted
    assert results_of(inbox.messages[0][0])["dmarc"] == "pass"


def test_enforce_with_quarantine_policy_accepts(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", policy=Policy(enforce=True))
    running = serve(start_server, gate, inbox)
    send(running, "bounce@ok.test", "a@soft.test")
    assert results_of(inbox.messages[0][0])["dmarc"] == "fail"
    assert inbox.messages[0][1].auth_results.dmarc.disposition == "quarantine"


@pytest.mark.parametrize(
    ("mode", "author", "refused"), [("none", "a@deny.test", False), ("reject", "a@soft.test", True)]
)
def test_user_overrides_the_published_policy(
    start_server: Any, resolver: Resolver, mode: str, author: str, refused: bool
) -> None:
    inbox = Inbox()
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", policy=Policy(enforce=True, dmarc=mode))
    running = serve(start_server, gate, inbox)
    if refused:
        with pytest.raises(smtplib.SMTPDataError):
            send(running, "bounce@ok.test", author)
    else:
        send(running, "bounce@ok.test", author)
    assert len(inbox.messages) == (0 if refused else 1)


def test_servfail_is_451_at_rcpt_and_at_end_of_data(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", policy=Policy(enforce=True))
    running = serve(start_server, gate, inbox)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(running, "a@x.broken.test", "a@ok.test")
    code, text = refused.value.recipients["bob@mx.test"]
    assert code == 451 and text.startswith(b"4.7.24 ")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        send(running, "bounce@ok.test", "a@x.broken.test")
    assert deferred.value.smtp_code == 451 and deferred.value.smtp_error.startswith(b"4.7.5 ")
    assert inbox.messages == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def test_dns_timeout_never_gives_250(start_server: Any, silent_port: int) -> None:
    inbox = Inbox()
    verifier = Verifier(Resolver([f"127.0.0.1:{silent_port}"], timeout=0.5))
    gate = AuthGate(verifier, authserv_id="mx.test", policy=Policy(enforce=True, spf_reject=False))
    running = serve(start_server, gate, inbox)
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        send(running, "a@deny.test", "a@deny.test")
    assert deferred.value.smtp_code == 451
    gate = AuthGate(verifier, authserv_id="mx.test", policy=Policy(enforce=True))
    running = serve(start_server, gate, inbox)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(running, "a@deny.test", "a@deny.test")
    assert refused.value.recipients["bob@mx.test"][0] == 451
    assert inbox.messages == []


def test_dnsbl_refuses_at_connect_with_the_lists_text(start_server: Any, resolver: Resolver) -> None:
    dnsbl = DNSBL(resolver, ["bl.test"])
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", dnsbl=dnsbl)
    running = serve(start_server, gate, Inbox())
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(running.host, running.port, timeout=30)
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(b"5.7.1 ")
    assert b"bl.test; 127.0.0.1 is listed, see https://bl.test/" in refused.value.smtp_error


def test_dnsbl_weights_and_threshold(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    light = DNSBL(resolver, ["light.test=0.5", "missing.test=5"], threshold=1)
    running = serve(start_server, AuthGate(Verifier(resolver), authserv_id="mx.test", dnsbl=light), inbox)
    send(running, "bounce@ok.test", "a@ok.test")
    assert len(inbox.messages) == 1
    both = DNSBL(resolver, ["light.test=0.5", "half.test=0.5"], threshold=1)
    policy = Policy(dnsbl_at="rcpt")
    running = serve(start_server, AuthGate(Verifier(resolver), authserv_id="mx.test", dnsbl=both, policy=policy), inbox)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(running, "bounce@ok.test", "a@ok.test")
    code, text = refused.value.recipients["bob@mx.test"]
    assert code == 554 and text.startswith(b"5.7.1 ")
    assert len(inbox.messages) == 1


def test_forged_header_with_our_id_is_dropped(start_server: Any, resolver: Resolver) -> None:
    inbox = Inbox()
    running = serve(start_server, AuthGate(Verifier(resolver), authserv_id="mx.test"), inbox)
    forged = b"Authentication-Results: mx.test; dmarc=pass header.from=deny.test\r\n" + message("a@deny.test")
    with smtplib.SMTP(running.host, running.port, timeout=30) as client:
        client.sendmail("a@deny.test", ["bob@mx.test"], forged)
    ((data, _),) = inbox.messages
    assert results_of(data)["dmarc"] == "fail"  # one header only: ours
    assert data.endswith(message("a@deny.test"))


def test_authenticated_submission_is_not_refused(start_server: Any, resolver: Resolver) -> None:
    from smtpgate import AuthResult

    def on_auth(auth: Any, session: Any) -> AuthResult | None:
        return AuthResult(user=auth.username) if auth.password == "secret" else None

    inbox = Inbox()
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", policy=Policy(enforce=True))
    options = gate.handlers(on_data=inbox.on_data, on_auth=on_auth)
    running = start_server(auth_methods=["PLAIN"], allow_insecure_auth=True, auth_optional=True, **options)
    with smtplib.SMTP(running.host, running.port, timeout=30) as client:
        client.ehlo("client.ok.test")
        client.login("alice", "secret")
        client.sendmail("a@deny.test", ["bob@mx.test"], message("a@deny.test"))
    ((data, _),) = inbox.messages
    found = results_of(data)
    assert (found["spf"], found["dmarc"], found["auth"]) == ("fail", "fail", "pass")
    assert b"auth=pass smtp.auth=alice" in data
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # the same sender without logging in
        send(running, "a@deny.test", "a@deny.test")


def test_dnsbl_asks_about_the_client_xclient_names(start_server: Any, resolver: Resolver, raw_client: Any) -> None:
    gate = AuthGate(Verifier(resolver), authserv_id="mx.test", dnsbl=DNSBL(resolver, ["xc.test"]))
    running = start_server(use_xclient=True, **gate.handlers(on_data=Inbox().on_data))
    client = raw_client(running.port)
    assert client.reply()[0] == 220  # the proxy itself (127.0.0.1) is not listed
    assert client.command("EHLO proxy.test")[0] == 250
    code, text = client.command("XCLIENT ADDR=192.0.2.66")
    assert code == 554 and "5.7.1" in text and "xc.test; 192.0.2.66 is listed" in text
