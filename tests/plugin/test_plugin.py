"""The smtpgate pytest plugin, as a project using it sees it (through pytester)."""

from __future__ import annotations

import pytest


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_using_smtpgate=source)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_sync_smtplib_test(pytester):
    result = run(
        pytester,
        """
        import smtplib

        def test_send(smtpgate_server):
            with smtplib.SMTP(smtpgate_server.host, smtpgate_server.port, timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com", "c@example.com"],
                                b"Subject: hi\\r\\nTo: b@example.com\\r\\n\\r\\nhello\\r\\n")
            [message] = smtpgate_server.wait_for(1)
            assert message["Subject"] == "hi"
            assert message.get_content() == "hello\\n"
            assert message.mail_from == "a@example.com"
            assert message.rcpt_to == ["b@example.com", "c@example.com"]
            assert message.raw == b"Subject: hi\\r\\nTo: b@example.com\\r\\n\\r\\nhello\\r\\n"
            assert smtpgate_server.last is message and not message.secure
            smtpgate_server.clear()
            assert smtpgate_server.messages == []

        def test_each_test_gets_a_fresh_server(smtpgate_server):
            assert smtpgate_server.messages == []
        """,
    )
    result.assert_outcomes(passed=2)


def test_async_aiosmtplib_test(pytester):
    result = run(
        pytester,
        """
        import asyncio
        from email.message import EmailMessage

        import aiosmtplib

        def test_send_async(smtpgate_server):
            async def main():
                message = EmailMessage()
                message["From"] = "a@example.com"
                message["To"] = "b@example.com"
                message["Subject"] = "async"
                message.set_content("hello")
                await aiosmtplib.send(message, hostname=smtpgate_server.host, port=smtpgate_server.port,
                                      start_tls=False, timeout=10)
                return await smtpgate_server.wait_for_async(1)

            [received] = asyncio.run(main())
            assert received["Subject"] == "async" and received.rcpt_to == ["b@example.com"]
        """,
    )
    result.assert_outcomes(passed=1)


def test_marker_options_auth_size_and_rejected_recipients(pytester):
    result = run(
        pytester,
        """
        import smtplib
        import pytest

        pytestmark = pytest.mark.smtpgate(size=1000)

        @pytest.mark.smtpgate(users={"alice": "secret"}, reject_recipients=["nobody@example.com"])
        def test_auth_and_rejection(smtpgate_server):
            with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
                client.ehlo()
                assert client.esmtp_features["size"] == "1000"  # the module marker applies too
                with pytest.raises(smtplib.SMTPSenderRefused):
                    client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\\r\\n\\r\\nx\\r\\n")
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login("alice", "wrong")
                client.login("alice", "secret")
                refused = client.sendmail("a@example.com", ["b@example.com", "nobody@example.com"],
                                          b"Subject: x\\r\\n\\r\\nx\\r\\n")
                assert refused == {"nobody@example.com": (550, b"5.1.1 No such user")}
                client.mail("a@example.com")  # no SIZE= announced: refused at the end of DATA
                client.rcpt("b@example.com")
                code, _ = client.data(b"Subject: big\\r\\n\\r\\n" + b"x" * 2000)
                assert code == 552
            [message] = smtpgate_server.wait_for(1)
            assert message.user == "alice" and message.rcpt_to == ["b@example.com"]

        @pytest.mark.smtpgate(reject_recipients=["nobody@example.com"])
        def test_all_recipients_refused(smtpgate_server):
            with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
                with pytest.raises(smtplib.SMTPRecipientsRefused):
                    client.sendmail("a@example.com", ["NOBODY@example.com"], b"x\\r\\n")
            assert smtpgate_server.messages == []
        """,
    )
    result.assert_outcomes(passed=2)


def test_factory_tls_and_server_options(pytester):
    result = run(
        pytester,
        """
        import smtplib
        import pytest

        def test_two_servers(smtpgate_server_factory):
            plain = smtpgate_server_factory(banner="first", hide_pipelining=True)
            secure = smtpgate_server_factory(implicit_tls=True)
            assert plain.port != secure.port
            with smtplib.SMTP(*plain.address, timeout=10) as client:
                code, banner = client.connect(*plain.address)
                assert b"first" in banner
                client.ehlo()
                assert "pipelining" not in client.esmtp_features
                client.starttls(context=plain.client_ssl_context())
                client.sendmail("a@example.com", ["b@example.com"], b"x\\r\\n")
            assert plain.wait_for(1)[0].secure
            with smtplib.SMTP_SSL(*secure.address, context=secure.client_ssl_context(), timeout=10) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"x\\r\\n")
            assert secure.wait_for(1)[0].secure

        def test_wait_for_times_out(smtpgate_server):
            with pytest.raises(AssertionError, match="expected 1 message"):
                smtpgate_server.wait_for(1, timeout=0.1)

        def test_bad_option_is_an_error(smtpgate_server_factory):
            with pytest.raises(TypeError, match="unknown SMTPServer option"):
                smtpgate_server_factory(bannr="x")
            with pytest.raises(TypeError, match="provided by the fixture"):
                smtpgate_server_factory(on_data=print)
        """,
    )
    result.assert_outcomes(passed=3)


def test_marker_is_registered(pytester):
    pytester.makeini("[pytest]\naddopts = --strict-markers\n")
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.smtpgate(name="mx.example")
        def test_name(smtpgate_server):
            assert smtpgate_server.server.options.name == "mx.example"
        """,
    )
    result.assert_outcomes(passed=1)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*smtpgate(**options)*"])


def test_projects_without_the_fixtures_are_untouched(pytester):
    result = run(pytester, "def test_nothing():\n    assert True\n")
    result.assert_outcomes(passed=1)
