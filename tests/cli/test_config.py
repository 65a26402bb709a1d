"""``--config``: TOML keys mirror the flags, flags win, paths are relative to the file."""

from __future__ import annotations

import mailbox
import socket

from cli_support import MESSAGE

from support import free_port


def test_config_file_with_flags_overriding_it(smtpgate_cli, tmp_path):
    port = free_port()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "smtpgate.toml").write_text(
        f"""
listen = ["127.0.0.1:{port}"]
sink = "maildir:from-config"
max-size = "2M"
log_level = "warning"

[server]
banner = "configured banner"
"""
    )
    command = smtpgate_cli("--config", "conf/smtpgate.toml", "--log-level", "info", "--port", str(port))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        assert b"configured banner" in raw.recv(1024)
    with command.smtp() as client:
        client.ehlo()
        assert client.esmtp_features["size"] == str(2 * 1024 * 1024)
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert len(list(mailbox.Maildir(conf / "from-config", create=False))) == 1  # relative to the file
    assert "Ctrl-C to stop" in command.stderr  # --log-level info won over the file's warning


def test_port_flag_replaces_the_config_files_listen(smtpgate_cli, tmp_path):
    (tmp_path / "smtpgate.toml").write_text(f'listen = ["127.0.0.1:{free_port()}"]\nsink = "dir:eml"\n')
    command = smtpgate_cli("--config", "smtpgate.toml", "--port", str(free_port()))
    with command.smtp() as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 1
