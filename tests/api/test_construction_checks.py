"""Contradictory options are refused when the server is made, with one line each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import trustme

from smtpgate import ServerThread, SMTPServer

untyped: Any = SMTPServer  # the calls below are wrong on purpose: as an untyped caller makes them


def _refused(error: type[Exception], **options: Any) -> str:
    with pytest.raises(error) as raised:
        untyped(name="mx.test", **options)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    other = trustme.CA().issue_cert("mx.test")
    server = ca.issue_cert("mx.test")
    files = {
        "cert": server.cert_chain_pems[0].bytes(),
        "key": server.private_key_pem.bytes(),
        "ca": ca.cert_pem.bytes(),
        "other_key": other.private_key_pem.bytes(),
        "garbled_cert": b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "garbled_key": b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "text": b"hello\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths


def test_min_version_above_max_version() -> None:
    message = _refused(ValueError, min_version="TLSv1.3", max_version="TLSv1.2")
    assert message == "option 'min_version' (TLSv1.3) is above 'max_version' (TLSv1.2)"


def test_request_cert_without_ca() -> None:
    message = _refused(ValueError, request_cert=True)
    assert message.startswith("option 'request_cert' needs 'ca'")


def test_request_cert_without_ca_in_an_sni_entry_that_turns_it_on(pems: dict[str, Path]) -> None:
    entry = {"cert": pems["cert"], "key": pems["key"], "request_cert": True}
    message = _refused(ValueError, sni_options={"mx.test": entry})
    assert message.startswith("sni_options['mx.test']: option 'request_cert' needs 'ca'")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"disabled_commands": ["STARTTLS"]}, "'disabled_commands' disables it"),
        ({"hide_starttls": True}, "'hide_starttls' hides it"),
    ],
)
def test_needs_upgrade_without_starttls(options: dict[str, Any], reason: str) -> None:
    message = _refused(ValueError, needs_upgrade=True, **options)
    assert message == f"option 'needs_upgrade' needs STARTTLS, but {reason}"


def test_needs_upgrade_with_implicit_tls_is_fine_without_starttls() -> None:
    server = SMTPServer(name="mx.test", needs_upgrade=True, secure=True, disabled_commands=["STARTTLS"])
    assert server.options.needs_upgrade and server.options.secure


def test_unknown_disabled_command() -> None:
    assert _refused(ValueError, disabled_commands=["VRFY", "EXPAND"]) == (
        "option 'disabled_commands': unknown command 'EXPAND' (did you mean 'EXPN'?)"
    )
    assert "known: AUTH, BDAT" in _refused(ValueError, disabled_commands=["SEND"])


def test_the_known_commands_are_the_ones_the_protocol_answers() -> None:
    from smtpgate.options import COMMAND_NAMES
    from smtpgate.protocol import core

    assert set(core._COMMANDS) == COMMAND_NAMES


def _one(session: Any) -> None:
    return None


async def _data_without_session(stream: Any) -> None:
    return None


class _Recorder:
    def __call__(self, address: Any, session: Any, extra: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("name", "handler", "shown"),
    [
        ("on_data", _data_without_session, "on_data(stream, session)"),
        ("on_rcpt_to", _one, "on_rcpt_to(address, session)"),
        ("on_mail_from", _Recorder(), "on_mail_from(address, session)"),
        ("on_connect", lambda: None, "on_connect(session)"),
        ("on_secure", _one, "on_secure(ssl_object, session)"),
    ],
)
def test_a_handler_that_cannot_take_its_arguments(name: str, handler: Any, shown: str) -> None:
    message = _refused(TypeError, **{name: handler})
    assert message.startswith(f"handler {name!r} is called as {shown}, but ")


def test_handlers_with_defaults_or_varargs_and_subclass_methods_are_accepted() -> None:
    async def on_data(stream: Any, session: Any, extra: Any = None) -> None:
        return None

    SMTPServer(on_data=on_data, on_rcpt_to=lambda *args: None, on_close=print)

    class Server(SMTPServer):
        async def on_mail_from(self, address: Any, session: Any) -> None:
            return None

    Server()

    class Broken(SMTPServer):
        async def on_mail_from(self, address: Any) -> None:
            return None

    with pytest.raises(TypeError, match=r"^handler 'on_mail_from' is called as on_mail_from\(address, session\)"):
        Broken()


@pytest.mark.parametrize("port", [-1, 65536, 70000])
def test_listen_refuses_a_port_out_of_range(port: int) -> None:
    async def listen() -> None:
        server = SMTPServer(name="mx.test")
        await server.listen(port, host="127.0.0.1")

    with pytest.raises(ValueError, match=rf"^port must be between 0 and 65535 \(0 picks a free port\), got {port}$"):
        asyncio.run(listen())
    with pytest.raises(ValueError, match="^port must be between 0 and 65535"):
        ServerThread(port=port)


def test_listen_refuses_a_port_that_is_not_an_int() -> None:
    async def listen() -> None:
        await untyped(name="mx.test").listen("2525", host="127.0.0.1")

    with pytest.raises(TypeError, match="^port must be an int, got str$"):
        asyncio.run(listen())


def test_listen_port_zero_picks_a_free_port() -> None:
    with ServerThread(SMTPServer(name="mx.test"), port=0) as running:
        assert 0 < running.port <= 65535


def test_a_key_given_as_the_certificate(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["key"], key=pems["key"])
    assert message == f"TLS cert {str(pems['key'])!r}: not a certificate (found EC PRIVATE KEY)"


def test_a_certificate_given_as_the_key(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["cert"], key=pems["cert"])
    assert message == f"TLS key {str(pems['cert'])!r}: not a private key (found CERTIFICATE)"


def test_a_file_without_pem(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["text"], key=pems["key"])
    assert message == f"TLS cert: {str(pems['text'])!r} does not contain a PEM block"


def test_a_garbled_certificate(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["garbled_cert"], key=pems["key"])
    assert message.startswith(f"TLS cert {str(pems['garbled_cert'])!r}: the certificate cannot be parsed")


def test_a_garbled_key(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["cert"], key=pems["garbled_key"])
    assert message.startswith(f"TLS key {str(pems['garbled_key'])!r}: cannot be parsed")


def test_a_key_of_another_certificate(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["cert"], key=pems["other_key"])
    expected = f"TLS key {str(pems['other_key'])!r} and cert {str(pems['cert'])!r}: the key does not belong"
    assert message.startswith(expected)


def test_a_key_given_as_the_ca(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["cert"], key=pems["key"], ca=pems["key"], request_cert=True)
    assert message == f"TLS ca {str(pems['key'])!r}: not a certificate (found EC PRIVATE KEY)"


def test_pem_text_is_named_as_such(pems: dict[str, Path]) -> None:
    message = _refused(ValueError, cert=pems["key"].read_bytes(), key=pems["key"].read_bytes())
    assert message == "TLS cert (PEM text): not a certificate (found EC PRIVATE KEY)"


def test_update_secure_context_refuses_the_same_contradictions(pems: dict[str, Path]) -> None:
    server = SMTPServer(name="mx.test", cert=pems["cert"], key=pems["key"])
    with pytest.raises(ValueError, match=r"^option 'min_version' \(TLSv1.3\) is above 'max_version' \(TLSv1.2\)$"):
        server.update_secure_context(min_version="TLSv1.3", max_version="TLSv1.2")
    with pytest.raises(ValueError, match="not a certificate"):
        server.update_secure_context(cert=pems["key"])
    server.update_secure_context(cert=pems["cert"], key=pems["key"], min_version="TLSv1.3")
    assert server.tls.default_options.min_version == "TLSv1.3"
