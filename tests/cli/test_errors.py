"""Start-up problems: exactly one line on stderr, a non-zero exit status, no traceback."""

from __future__ import annotations

import socket

import pytest
from cli_support import run_once


def _one_line_error(result, *fragments):
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("smtpgate: error: ")
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port", "70000"], "out of range"),
        (["--listen", "nowhere"], "expected host:port"),
        (["--max-size", "lots"], "invalid size"),
        (["--sink", "pigeon:loft"], "invalid sink"),
        (["--tls-cert", "cert.pem"], "must be given together"),
        (["--log-format", "xml"], "invalid choice"),
        (["--workers", "0"], "at least 1"),
    ],
)
def test_bad_arguments(tmp_path, args, fragment):
    result = run_once(args, tmp_path)
    assert result.returncode == 2
    _one_line_error(result, fragment)


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_once(["--port", str(port)], tmp_path)
        _one_line_error(result, f"127.0.0.1:{port}", "in use")
        result = run_once(["--port", str(port), "--workers", "2"], tmp_path)
        _one_line_error(result, f"127.0.0.1:{port}", "in use")


def test_unreadable_certificate(tmp_path):
    result = run_once(["--port", "0", "--tls-cert", "missing.pem", "--tls-key", "missing.key"], tmp_path)
    _one_line_error(result, "missing.pem")


def test_bad_config_key(tmp_path):
    (tmp_path / "smtpgate.toml").write_text('host = "127.0.0.1"\nprot = 2525\n')
    result = run_once(["--config", "smtpgate.toml"], tmp_path)
    _one_line_error(result, "unknown key 'prot'", "did you mean 'port'")


def test_bad_config_value_and_server_option(tmp_path):
    (tmp_path / "a.toml").write_text("port = 0\nworkers = 'many'\n")
    _one_line_error(run_once(["--config", "a.toml"], tmp_path), "'workers' must be int")
    (tmp_path / "b.toml").write_text("port = 0\n[server]\nbaner = 'hi'\n")
    _one_line_error(run_once(["--config", "b.toml"], tmp_path), "unknown SMTPServer option 'baner'")
    (tmp_path / "c.toml").write_text("port = \n")
    _one_line_error(run_once(["--config", "c.toml"], tmp_path), "c.toml")
    _one_line_error(run_once(["--config", "missing.toml"], tmp_path), "cannot read config file")
