"""Options are typed: mypy --strict on a user's file catches a misspelled option, a wrong
type or a handler of the wrong shape, and accepts correct code (the fixture's type too)."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from smtpgate import SMTPServer
from smtpgate.options import ServerOptions, ServerSettings
from smtpgate.tls import TLSOptions, TLSSettings

BAD = """
from smtpgate import Address, DataStream, ServerThread, Session, SMTPServer
from smtpgate.pytest_plugin import SMTPTestServer


def on_rcpt(address: Address, session: Session) -> None: ...
def on_data(stream: DataStream) -> None: ...


SMTPServer(hide_STARTTLS=True)  # line 10
SMTPServer(size="10MB")  # line 11
SMTPServer(on_data=on_data)  # line 12
SMTPServer(on_rcpt_to=on_rcpt, min_version="TLSv1.1")  # line 13
ServerThread(hide_starttls=1.5)  # line 14
SMTPServer(sni_options={"a.example": {"crt": "c.pem"}})  # line 15
SMTPTestServer(users={"a": "b"}, sise=10)  # line 16
SMTPServer().update_secure_context(size=10)  # line 17
"""

GOOD = """
from smtpgate import DataStream, ServerThread, Session, SMTPServer
from smtpgate.pytest_plugin import CapturedMessage, SMTPTestServer


async def on_data(stream: DataStream, session: Session) -> str:
    await stream.read()
    return "Queued"


def test_x(smtpgate_server: SMTPTestServer) -> None:
    message: CapturedMessage = smtpgate_server.last
    assert message.mail_from == "a@example.com"
    assert smtpgate_server.wait_for(1)[0].raw


def allow(address: str) -> bool:
    return address.startswith("10.")


server = SMTPServer(
    on_data=on_data,
    size=10 * 1024 * 1024,
    use_proxy=allow,
    use_xclient="*",
    disabled_commands=["VRFY"],
    min_version="TLSv1.3",
    sni_options={"a.example": {"cert": "a.pem", "key": "a-key.pem"}},
)
ServerThread(server, port=0)
ServerThread(size=1000, hide_starttls=True, bare_lf="reject")
SMTPTestServer(users={"a": "b"}, reject_recipients=["x@example.com"], size=1000, auth_optional=True)
server.update_secure_context(cert="new.pem", key="new-key.pem")
"""


def _mypy(tmp_path: Path, files: dict[str, str]) -> tuple[int, str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            *files,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def test_mypy_strict_refuses_misspelled_options_wrong_types_and_wrong_handlers(tmp_path: Path) -> None:
    status, output = _mypy(tmp_path, {"bad.py": BAD, "good.py": GOOD})
    assert status == 1, output
    errors = [line for line in output.splitlines() if ": error:" in line]
    assert not [line for line in errors if line.startswith("good.py")], output
    by_line = {int(re.match(r"bad\.py:(\d+):", line).group(1)): line for line in errors}  # type: ignore[union-attr]
    assert sorted(by_line) == [10, 11, 12, 13, 14, 15, 16, 17], output
    assert 'Unexpected keyword argument "hide_STARTTLS"' in by_line[10]
    assert '"size"' in by_line[11] and '"str"' in by_line[11]
    assert '"on_data"' in by_line[12]
    assert '"min_version"' in by_line[13]
    assert '"hide_starttls"' in by_line[14]
    assert "TLSSettings" in by_line[15]  # {"crt": ...} is no TLSSettings
    assert 'Unexpected keyword argument "sise"' in by_line[16]
    assert 'Unexpected keyword argument "size" for "update_secure_context"' in by_line[17]


def test_mypy_strict_accepts_correct_code_and_the_fixture_type(tmp_path: Path) -> None:
    status, output = _mypy(tmp_path, {"good.py": GOOD})
    assert status == 0, output


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        (
            {"hide_STARTTLS": True},
            TypeError,
            "unknown SMTPServer option 'hide_STARTTLS' (did you mean 'hide_starttls'?)",
        ),
        ({"size": "10MB"}, TypeError, "option 'size' must be an int, got str"),
        ({"hide_starttls": 1}, TypeError, "option 'hide_starttls' must be True or False"),
        ({"request_cert": "yes"}, TypeError, "option 'request_cert' must be True or False"),
        ({"min_version": "TLSv1.1"}, ValueError, "option 'min_version' must be one of"),
        ({"on_data": "store"}, TypeError, "option 'on_data' must be callable, got str"),
    ],
)
def test_untyped_callers_get_the_same_checks_at_run_time(options: dict[str, object], error: type, text: str) -> None:
    untyped: typing.Any = SMTPServer
    with pytest.raises(error) as raised:
        untyped(**options)
    assert text in str(raised.value)
    assert "\n" not in str(raised.value)


def _annotation(value: object) -> str:
    return value.__forward_arg__ if isinstance(value, typing.ForwardRef) else str(value)


def test_the_typed_declaration_and_the_run_time_options_name_the_same_options() -> None:
    assert ServerSettings.__optional_keys__ == {f.name for f in fields(ServerOptions)}
    assert TLSSettings.__optional_keys__ == {f.name for f in fields(TLSOptions)}
    assert not ServerSettings.__required_keys__
    hints = {name: _annotation(value) for name, value in ServerSettings.__annotations__.items()}
    plain = [f for f in fields(ServerOptions) if hints[f.name] in ("bool", "int", "float", "str")]
    assert len(plain) >= 30
    for option in plain:  # the plain types are stated alike in both
        assert hints[option.name] == option.type, option.name
