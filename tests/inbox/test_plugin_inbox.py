"""The plugin's inbox fixtures, as a project using them sees them (through pytester)."""

from __future__ import annotations

import pytest
from inbox_support import AppThread, make_message

SOURCE = """
import smtplib, threading, time
from email.message import EmailMessage

PORT = {port}

def send(to, subject):
    message = EmailMessage()
    message["From"] = "app@example.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Your code is 4711")
    with smtplib.SMTP("127.0.0.1", PORT, timeout=30) as smtp:
        smtp.send_message(message)

def test_wait_for_in_my_own_mailbox(smtpgate_mailbox):
    later = threading.Timer(0.3, send, (smtpgate_mailbox.mailbox, "Sign-in code"))
    later.start()
    found = smtpgate_mailbox.wait_for("subject:code", timeout=30)
    later.join()
    assert "4711" in found["Text"]
    assert smtpgate_mailbox.messages()["total"] == 1

def test_another_test_sees_none_of_it(smtpgate_mailbox):
    assert smtpgate_mailbox.messages()["total"] == 0

def test_the_whole_inbox(smtpgate_inbox):
    send("shared@example.test", "for everyone")
    assert smtpgate_inbox.wait_for("subject:everyone", timeout=30)["Subject"] == "for everyone"
"""


def test_fixtures_against_a_running_smtpgate(pytester: pytest.Pytester, inbox_app: AppThread) -> None:
    pytester.makepyfile(test_project=SOURCE.format(port=inbox_app.smtp_port))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--smtpgate-url", inbox_app.url)
    result.assert_outcomes(passed=3)
    mailboxes = [box["Mailbox"] for box in inbox_app.client().mailboxes()]
    assert mailboxes == ["shared@example.test"]  # the per-test mailboxes were emptied


def test_url_from_the_environment(
    pytester: pytest.Pytester, inbox_app: AppThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox_app.send(make_message("present"))
    pytester.makepyfile(
        test_env="def test_it(smtpgate_inbox):\n    assert smtpgate_inbox.wait_for('subject:present', timeout=5)\n"
    )
    monkeypatch.setenv("SMTPGATE_URL", inbox_app.url)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_missing_url_fails_clearly(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTPGATE_URL", raising=False)
    pytester.makepyfile(test_none="def test_it(smtpgate_inbox):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--smtpgate-url URL or SMTPGATE_URL*"])


IN_PROCESS = """
import asyncio, smtplib, threading
import pytest

def send(server, to, subject):
    with smtplib.SMTP(*server.address, timeout=30) as smtp:
        smtp.sendmail("app@example.test", [to], f"To: {to}\\r\\nSubject: {subject}\\r\\n\\r\\nbody of {subject}\\r\\n")

def test_wait_for_a_query(smtpgate_server):
    send(smtpgate_server, "a@example.test", "first")
    threading.Timer(0.2, send, (smtpgate_server, "b+promo@example.test", "Welcome aboard")).start()
    message = smtpgate_server.wait_for("subject:welcome tag:promo", timeout=30)
    assert message["Subject"] == "Welcome aboard" and message.rcpt_to == ["b+promo@example.test"]
    assert smtpgate_server.wait_for(2)[0]["Subject"] == "first"  # counts still work

def test_a_query_that_never_matches(smtpgate_server):
    send(smtpgate_server, "a@example.test", "hello")
    with pytest.raises(AssertionError, match="no message matching 'subject:bye' within 0.2 s [(]1 received[)]"):
        smtpgate_server.wait_for("subject:bye", timeout=0.2)

def test_async(smtpgate_server):
    async def scenario():
        asyncio.get_running_loop().call_later(0.2, threading.Thread(
            target=send, args=(smtpgate_server, "c@example.test", "async one")).start)
        return await smtpgate_server.wait_for_async("to:c@example.test", timeout=30)
    assert asyncio.run(scenario())["Subject"] == "async one"
"""


def test_in_process_server_waits_for_a_query(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_in_process=IN_PROCESS)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
