"""Start-up checks of the command: the real port after --port 0, flags named in errors."""

from __future__ import annotations

import re
import smtplib

from cli_support import run_once


def test_port_zero_prints_the_port_it_listens_on(smtpgate_cli):
    command = smtpgate_cli("--port", "0", "--sink", "stdout")
    summary = next(line for line in command.stderr.splitlines() if "Ctrl-C to stop" in line)
    match = re.search(r"smtpgate SMTP on 127\.0\.0\.1:(\d+) ", summary)
    assert match, summary
    port = int(match.group(1))
    assert port != 0
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        assert client.noop()[0] == 250


def test_port_zero_with_workers_prints_the_port_too(smtpgate_cli):
    command = smtpgate_cli("--port", "0", "--workers", "2", "--sink", "stdout", marker="2 workers")
    summary = next(line for line in command.stderr.splitlines() if "2 workers" in line)
    match = re.search(r"on 127\.0\.0\.1:(\d+) ", summary)
    assert match and int(match.group(1)) != 0, summary


def _one_line(result) -> str:
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("smtpgate: error: ")
    return result.stderr.strip()


def test_a_missing_passphrase_file_names_the_flag(tmp_path):
    import trustme

    pair = trustme.CA().issue_cert("mx.test")
    pair.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    pair.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    args = ["--tls-cert", "cert.pem", "--tls-key", "key.pem", "--tls-passphrase-file", "missing.txt"]
    message = _one_line(run_once(args, tmp_path))
    assert message == (
        "smtpgate: error: --tls-passphrase-file 'missing.txt': cannot read it: No such file or directory"
    )


def test_a_passphrase_file_without_a_key_is_refused(tmp_path):
    (tmp_path / "pass.txt").write_text("secret\n")
    result = run_once(["--tls-passphrase-file", "pass.txt"], tmp_path)
    assert result.returncode == 2
    assert _one_line(result) == "smtpgate: error: --tls-passphrase-file needs --tls-key (the key it decrypts)"


def test_auth_optional_without_auth_file_is_refused(tmp_path):
    result = run_once(["--auth-optional"], tmp_path)
    assert result.returncode == 2
    assert _one_line(result) == "smtpgate: error: --auth-optional needs --auth-file (the users who may authenticate)"


def test_auth_optional_without_auth_file_in_a_config_file_is_refused(tmp_path):
    (tmp_path / "smtpgate.toml").write_text("auth_optional = true\n")
    result = run_once(["--config", "smtpgate.toml"], tmp_path)
    assert result.returncode == 2
    assert "--auth-optional needs --auth-file" in _one_line(result)
