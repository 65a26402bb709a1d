"""Metrics and health of the real command, scraped over HTTP and parsed with
prometheus_client's own text parser, checked against what the test did."""

from __future__ import annotations

import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cli_support import Command
from cluster_support import Webhook
from prometheus_client.parser import text_string_to_metric_families

from raw_client import RawClient
from smtpgate.cli.passwords import hash_password
from support import free_port, wait_until


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    status, text = http_get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_metrics_and_health_of_the_command(smtpgate_cli: Callable[..., Command], tmp_path: Path) -> None:
    auth_file = tmp_path / "users"
    auth_file.write_text(f"alice:{hash_password('secret', n=2**10)}\n")
    http = free_port()
    mail = tmp_path / "mail"
    command = smtpgate_cli(
        "--metrics",
        f"127.0.0.1:{http}",
        "--sink",
        f"maildir:{mail}",
        "--auth-file",
        str(auth_file),
        "--auth-optional",
        "--allow-insecure-auth",
        "--max-size",
        "2K",
        "--limit-connections",
        "2",
        "--limit-messages",
        "3/min",
    )
    assert http_get(http, "/livez") == (200, "ok\n")
    assert http_get(http, "/readyz") == (200, "ready\n")
    connections = 0

    # Three messages, one over --max-size (552), then a fourth MAIL over the limit (450).
    bodies = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\n" + b"x" * 700 + b"\r\n"]
    with command.smtp() as client:
        connections += 1
        for body in bodies:
            client.sendmail("a@x.test", ["b@y.test"], body)
        client.mail("a@x.test")  # no SIZE parameter: refused after DATA
        client.rcpt("b@y.test")
        assert client.data(b"Subject: big\r\n\r\n" + b"y" * 3000 + b"\r\n")[0] == 552
        code, text = client.mail("c@x.test")
        assert code == 450 and b"4.7.1 Too many messages" in text
        client.rset()

    # AUTH: one failure, one success; a TLS handshake; a failed TLS handshake.
    with command.smtp() as client:
        connections += 1
        client.starttls(context=unverified())
        client.ehlo("client.test")
        client.user, client.password = "alice", "wrong"
        try:
            client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as error:
            assert error.smtp_code == 535
        client.user, client.password = "alice", "secret"
        assert client.auth("PLAIN", client.auth_plain)[0] == 235
    broken = RawClient("127.0.0.1", command.port)
    connections += 1
    broken.reply()
    broken.command("EHLO client.test")
    assert broken.command("STARTTLS")[0] == 220
    broken.send(b"\x16\x03\x01\x00\x05garbage-that-is-no-client-hello" * 4)
    assert broken.is_closed()

    # Two connections held, the third refused by the limit.
    held = [command.smtp(), command.smtp()]
    connections += 3
    refused = socket.create_connection(("127.0.0.1", command.port), timeout=10)
    assert refused.recv(1024).startswith(b"421 4.7.0 Too many concurrent connections")
    refused.close()
    during = scrape(http)
    assert value(during, "smtpgate_connections_active") == 2
    for client in held:
        client.quit()

    def settled() -> bool:
        return value(scrape(http), "smtpgate_connections_active") == 0

    wait_until(settled, 10, "every session closed")
    samples = scrape(http)
    assert value(samples, "smtpgate_connections_total") == connections
    assert value(samples, "smtpgate_messages_accepted_total") == 2
    assert value(samples, "smtpgate_message_bytes_total") == sum(len(b) for b in bodies)
    assert value(samples, "smtpgate_messages_refused_total", code="552") == 1
    assert value(samples, "smtpgate_commands_refused_total", command="MAIL", code="450") == 1
    assert value(samples, "smtpgate_limit_refusals_total", limit="messages") == 1
    assert value(samples, "smtpgate_limit_refusals_total", limit="connections") == 1
    assert value(samples, "smtpgate_sessions_total", outcome="message") == 1
    assert value(samples, "smtpgate_sessions_total", outcome="refused") == 1
    assert value(samples, "smtpgate_sessions_total", outcome="no_message") == connections - 2
    assert value(samples, "smtpgate_tls_handshakes_total") == 1
    assert value(samples, "smtpgate_tls_failures_total") == 1
    assert value(samples, "smtpgate_auth_failures_total") == 1
    assert value(samples, "smtpgate_auth_successes_total") == 1
    assert value(samples, "smtpgate_handler_seconds_count", handler="on_data") == 3
    assert value(samples, "smtpgate_handler_seconds_count", handler="on_connect") == connections
    assert len(list((mail / "new").iterdir())) == 2

    # Not ready once the Maildir cannot be written (gone), ready again when it is back.
    (mail / "new").rename(tmp_path / "aside")
    mail.rename(tmp_path / "mail-aside")
    status, text = http_get(http, "/readyz")
    assert status == 503 and "not writable" in text
    (tmp_path / "mail-aside").rename(mail)
    assert http_get(http, "/readyz")[0] == 200


def test_metrics_port_taken_is_one_line(smtpgate_cli: Callable[..., Command], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = smtpgate_cli("--metrics", f"127.0.0.1:{port}", "--sink", f"dir:{tmp_path / 'd'}", wait=False)
        assert command.wait(20) == 1
    assert "smtpgate: error: --metrics:" in command.stderr


def test_health_and_metrics_on_the_http_server(smtpgate_cli: Callable[..., Command], tmp_path: Path) -> None:
    """With --http (the inbox's server) and no --metrics, the same server answers them."""
    http = free_port()
    command = smtpgate_cli("--http", f"127.0.0.1:{http}", "--sink", f"maildir:{tmp_path / 'mail'}")
    with command.smtp() as client:
        client.sendmail("a@x.test", ["b@y.test"], b"Subject: one\r\n\r\nfirst\r\n")
    assert http_get(http, "/livez") == (200, "ok\n")
    assert http_get(http, "/readyz") == (200, "ready\n")
    samples = scrape(http)
    assert value(samples, "smtpgate_messages_accepted_total") == 1
    assert http_get(http, "/api/v1/messages")[0] == 200  # the inbox is still there


def test_local_queue_and_its_deliveries_in_the_metrics(smtpgate_cli: Callable[..., Command], tmp_path: Path) -> None:
    hook = Webhook(delay=0).start()
    try:
        http = free_port()
        command = smtpgate_cli(
            "--deliver", hook.url("local"), "--queue", str(tmp_path / "queue"), "--metrics", f"127.0.0.1:{http}"
        )
        with command.smtp() as client:
            client.sendmail("a@x.test", ["b@y.test"], b"Subject: q\r\nX-Token: local-1\r\n\r\nq\r\n")
        wait_until(lambda: hook.count("local-1") == 1, 20, "the webhook delivery")
        wait_until(
            lambda: value(scrape(http), "smtpgate_delivery_attempts_total", outcome="delivered") == 1, 10, "counted"
        )
        samples = scrape(http)
        queues = {labels for (name, labels) in samples if name == "smtpgate_queue_messages"}
        assert len(queues) == 1 and "queue" in dict(next(iter(queues)))["queue"]
    finally:
        hook.stop()
