"""The compiled build (mypyc) and the pure one: the wheel a user builds, and what it runs.

`scripts/test` runs this file twice: against the editable install (pure Python) and with a
compiled wheel of the checkout first on the path (``SMTPGATE_EXPECT_COMPILED=1``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import shutil
import smtplib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from smtpgate import DataStream, DataStreamError, MessageTooLarge, SMTPError, XOAuth2Error
from smtpgate.compiled import is_compiled

ROOT = Path(__file__).resolve().parent.parent
EXPECT_COMPILED = os.environ.get("SMTPGATE_EXPECT_COMPILED") == "1"


def compiled_list() -> list[str]:
    """setup.py's COMPILED, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets):
            return [str(ast.literal_eval(item)) for item in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("setup.py has no COMPILED list")


def module_name(path: str) -> str:
    return "smtpgate." + path.removesuffix(".py").replace("/", ".")


def test_the_build_is_the_one_expected():
    assert is_compiled() is EXPECT_COMPILED
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for path in compiled_list():
        module = importlib.import_module(module_name(path))
        assert str(module.__file__).endswith(suffixes) is EXPECT_COMPILED, module.__name__


def test_what_stays_pure_stays_pure():
    """Sessions take the attributes handlers add; SMTPError subclasses come from users."""
    for name in ("smtpgate.session", "smtpgate.errors", "smtpgate.protocol.state"):
        assert str(importlib.import_module(name).__file__).endswith(".py"), name


def test_users_subclass_the_public_classes():
    class UnknownUser(SMTPError):
        def __init__(self) -> None:
            super().__init__(550, "No such user")

    class Gone(DataStreamError):
        pass

    class Huge(MessageTooLarge):
        pass

    class Counting(DataStream):
        pass

    assert (UnknownUser().code, UnknownUser().message) == (550, "No such user")
    assert isinstance(Huge("x"), DataStreamError) and isinstance(Gone("y"), Exception)
    assert Counting(0).byte_length == 0
    assert XOAuth2Error().code == 535


def test_a_handler_refuses_with_its_own_smtperror_subclass_and_tags_the_session(start_server, received):
    class PolicyRefusal(SMTPError):
        def __init__(self) -> None:
            super().__init__(553, "Not from here", enhanced="5.7.1")

    def on_connect(session):
        session.tag = "added by a handler"  # a compiled Session would refuse this

    def on_mail_from(address, session):
        if address.address.startswith("spam"):
            raise PolicyRefusal()

    running = start_server(on_connect=on_connect, on_mail_from=on_mail_from, on_data=received.on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo()
        assert client.mail("spam@example.com") == (553, b"5.7.1 Not from here")
        client.rset()
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\ny\r\n")
    received.wait_for(1)
    *_, session = received.messages[0]
    assert session.tag == "added by a handler"


def _build_wheel(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` of a copy of the checkout (the build must not touch the real tree)."""
    tree = tmp_path / "tree"
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name if tree.exists() else _mkdir(tree) / name)
    shutil.copytree(ROOT / "build_backend", tree / "build_backend", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    command = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    command.append(".")
    return subprocess.run(
        command, cwd=tree, env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=False
    )


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _pure_wheel(tmp_path: Path) -> Path:
    """The one wheel built into ``tmp_path``, checked to hold the sources and nothing compiled."""
    [wheel] = tmp_path.glob("smtpgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "smtpgate/protocol/core.py" in names
    assert not [name for name in names if name.endswith(".so")]
    return wheel


@pytest.mark.slow
def test_a_pure_wheel_when_asked(tmp_path):
    result = _build_wheel(tmp_path, {"SMTPGATE_PURE": "1"})
    assert result.returncode == 0, result.stderr
    assert _pure_wheel(tmp_path).name.endswith("-py3-none-any.whl")


@pytest.mark.slow
def test_no_c_compiler_gives_a_pure_wheel_with_a_warning(tmp_path):
    pytest.importorskip("mypyc")
    result = _build_wheel(tmp_path, {"CC": "false", "LDSHARED": "false"})
    assert result.returncode == 0, result.stderr
    assert "could not compile" in result.stderr + result.stdout
    _pure_wheel(tmp_path)


@pytest.mark.slow
def test_no_c_compiler_fails_when_compiled_is_required(tmp_path):
    pytest.importorskip("mypyc")
    result = _build_wheel(tmp_path, {"CC": "false", "LDSHARED": "false", "SMTPGATE_REQUIRE_COMPILED": "1"})
    assert result.returncode != 0
    assert "SMTPGATE_REQUIRE_COMPILED" in result.stderr + result.stdout


@pytest.mark.slow
def test_the_compiled_modules_type_check_without_the_runtime_dependencies(tmp_path):
    """pip builds a wheel before it installs cryptography: mypyc must not need it."""
    pytest.importorskip("mypy")
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    sources = [f"src/smtpgate/{path}" for path in compiled_list()]
    command = [sys.executable, "-m", "mypy", "--python-executable", str(bare / "bin" / "python")]
    command += ["--cache-dir", str(tmp_path / "cache"), *sources]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
