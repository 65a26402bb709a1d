"""The command with its defaults and each sink: smtplib sends, the message is stored and
one line is printed."""

from __future__ import annotations

import json
import mailbox
import re
import smtplib
import ssl

from cli_support import MESSAGE

from support import wait_until


def test_default_run_stores_in_maildir_and_prints_a_line(smtpgate_cli, tmp_path):
    command = smtpgate_cli()
    assert "127.0.0.1:" in command.stderr and "maildir:./maildir" in command.stderr
    with command.smtp() as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")  # the generated certificate serves STARTTLS
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.starttls(context=context)
        assert client.sendmail("me@example.com", ["you@example.com"], MESSAGE) == {}
    box = mailbox.Maildir(tmp_path / "maildir", create=False)
    messages = list(box)
    assert len(messages) == 1
    stored = messages[0]
    assert stored["Subject"] == "hello there"
    assert stored["Return-Path"] == "<me@example.com>"
    assert stored["Received"].startswith("from client.test")
    assert stored.get_payload() == "Hi!\n"  # local line endings in a Maildir
    command.wait_for_output("stored=", stream="stdout")
    line = command.stdout.strip()
    assert "\n" not in line
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ from=<me@example.com> to=<you@example.com> size=\d+ ", line)
    assert 'subject="hello there"' in line
    assert line.endswith("stored=./maildir/new/" + box.keys()[0])


def test_mbox_sink(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--sink", "mbox:mail.mbox")
    body = b"Subject: one\r\n\r\nFrom the start\r\n"
    with command.smtp() as client:
        client.sendmail("a@example.com", ["b@example.com"], body)
        client.sendmail("", ["b@example.com"], b"Subject: two\r\n\r\nbounce\r\n")
    box = mailbox.mbox(tmp_path / "mail.mbox", create=False)
    first, second = list(box)
    assert first.get_from().startswith("a@example.com ")
    assert first["Subject"] == "one" and first.get_payload() == ">From the start\n"
    assert second.get_from().startswith("MAILER-DAEMON ") and second["Subject"] == "two"
    wait_until(lambda: command.stdout.count("stored=mail.mbox") == 2, what="two lines")


def test_dir_sink_keeps_crlf(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--sink", "dir:out")
    with command.smtp() as client:
        client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE)
    files = list((tmp_path / "out").glob("*.eml"))
    assert len(files) == 1
    data = files[0].read_bytes()
    assert data.endswith(MESSAGE) and data.startswith(b"Return-Path: <a@example.com>\r\n")
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind
    command.wait_for_output("to=<b@example.com>,<c@example.com>", stream="stdout")


def test_stdout_sink_prints_the_message_and_logs_the_line_on_stderr(smtpgate_cli):
    command = smtpgate_cli("--sink", "stdout")
    with command.smtp() as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    command.wait_for_output("Hi!", stream="stdout")
    assert command.stdout.startswith("From a@example.com ")
    assert "Subject: hello there\n" in command.stdout
    command.wait_for_output("stored=stdout", stream="stderr")


def test_max_size_refuses_with_552_and_stores_nothing(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--max-size", "1K")
    with command.smtp() as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "1024"
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        code, _ = client.data(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
        assert code == 552
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    assert len(list(mailbox.Maildir(tmp_path / "maildir", create=False))) == 1


def test_lmtp(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--lmtp")
    client = smtplib.LMTP("127.0.0.1", command.port, timeout=10)
    try:
        assert client.sendmail("a@example.com", ["b@example.com", "c@example.com"], MESSAGE) == {}
    finally:
        client.quit()
    assert len(list(mailbox.Maildir(tmp_path / "maildir", create=False))) == 1


def test_json_log_format(smtpgate_cli):
    command = smtpgate_cli("--log-format", "json", "--log-level", "debug")
    with command.smtp() as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    command.wait_for_output("stored", stream="stdout")
    record = json.loads(command.stdout)
    assert record["event"] == "message"
    assert (record["from"], record["to"], record["subject"]) == ("a@example.com", ["b@example.com"], "hello there")
    assert record["stored"].startswith("./maildir/new/")
    lines = command.stderr.splitlines()
    assert len(lines) >= 3
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message", "pid"} <= set(records[0])
    assert any("Ctrl-C" in r["message"] for r in records)


def test_listen_on_several_addresses(smtpgate_cli, tmp_path):
    from support import free_port

    first, second = free_port(), free_port()
    command = smtpgate_cli("--listen", f"127.0.0.1:{first}", "--listen", f"127.0.0.1:{second}", "--sink", "dir:d")
    for port in (first, second):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert len(list((tmp_path / "d").glob("*.eml"))) == 2
    assert command.process.poll() is None
