"""``--auth-file`` with scrypt hashes made by ``smtpgate hash-password``."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from cli_support import MESSAGE, run_once

from smtpgate.cli.passwords import ScryptHash, hash_password, load_auth_file, verify_password
from support import free_port


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture
def auth_file(tmp_path):
    result = run_once(["hash-password", "alice"], tmp_path, stdin="wonderland\n")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("alice:scrypt$16384$8$1$") and "wonderland" not in line
    path = tmp_path / "users"
    path.write_text(f"# users of the test\n\n{line}\n")
    return path


def test_hash_password_without_user_prints_only_the_hash(tmp_path):
    result = run_once(["hash-password"], tmp_path, stdin="secret\n")
    assert result.returncode == 0
    hashed = result.stdout.strip()
    assert verify_password("secret", ScryptHash.parse(hashed))
    assert not verify_password("Secret", ScryptHash.parse(hashed))
    assert run_once(["hash-password"], tmp_path, stdin="").returncode == 1


def test_hashes_are_salted_and_unknown_users_never_match():
    first, second = hash_password("x"), hash_password("x")
    assert first != second
    assert not verify_password("x", None)


def test_auth_required_after_starttls(smtpgate_cli, auth_file, tmp_path):
    # the [server] table passes other SMTPServer options: no delay after a failure here
    (tmp_path / "smtpgate.toml").write_text(f"auth_file = '{auth_file.name}'\n[server]\nauth_failure_delay = 0\n")
    command = smtpgate_cli("--config", "smtpgate.toml", "--port", str(free_port()))
    with command.smtp() as client:
        client.ehlo()
        assert not client.has_extn("auth")  # never offered in clear text
        client.starttls(context=_tls())
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert refused.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", "wrong")
        client.login("alice", "wonderland")
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    command.wait_for_output("stored=", stream="stdout")
    with command.smtp() as client:  # an unknown user fails like a wrong password
        client.starttls(context=_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("nobody", "wonderland")


def test_auth_optional_and_insecure_auth(smtpgate_cli, auth_file):
    command = smtpgate_cli("--auth-file", str(auth_file), "--auth-optional", "--allow-insecure-auth")
    with command.smtp() as client:
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
        client.login("alice", "wonderland")
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}


def test_plaintext_passwords_are_refused_with_one_line(tmp_path):
    path = tmp_path / "users"
    path.write_text("alice:wonderland\n")
    with pytest.raises(ValueError, match="line 1: not a scrypt hash"):
        load_auth_file(str(path))
    result = run_once(["--port", "0", "--auth-file", str(path)], tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "not a scrypt hash" in result.stderr
