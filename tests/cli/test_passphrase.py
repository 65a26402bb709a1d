"""An encrypted --tls-key needs --tls-passphrase-file; without it, one clear line."""

from __future__ import annotations

import smtplib
import ssl

import trustme
from cli_support import run_once
from cryptography.hazmat.primitives import serialization


def _encrypted_pair(folder, password: bytes) -> None:
    leaf = trustme.CA().issue_cert("localhost")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    (folder / "key.pem").write_bytes(encrypted)
    (folder / "cert.pem").write_bytes(leaf.cert_chain_pems[0].bytes())


def test_encrypted_key_without_a_passphrase_is_one_line(tmp_path):
    _encrypted_pair(tmp_path, b"pw1")
    result = run_once(["--port", "0", "--tls-cert", "cert.pem", "--tls-key", "key.pem"], tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["smtpgate: error: TLS key is encrypted: give --tls-passphrase-file"]


def test_encrypted_key_with_its_passphrase_file_serves_starttls(smtpgate_cli, tmp_path):
    _encrypted_pair(tmp_path, b"pw1")
    (tmp_path / "pass.txt").write_text("pw1\n")
    command = smtpgate_cli("--tls-cert", "cert.pem", "--tls-key", "key.pem", "--tls-passphrase-file", "pass.txt")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", command.port, timeout=10) as client:
        client.starttls(context=context)
        assert client.sock.version() is not None
        assert client.noop()[0] == 250
