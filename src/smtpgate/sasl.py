"""SASL for SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5 and XOAUTH2, as pure state machines.

A mechanism is fed the client's decoded responses and answers either with the next
challenge (bytes, base64-encoded by the caller) or with the finished `AuthRequest`
for the ``on_auth`` handler.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from .errors import SMTPError

__all__ = [
    "AuthRequest",
    "AuthResult",
    "XOAuth2Error",
    "SASLProblem",
    "MECHANISMS",
    "new_mechanism",
    "Mechanism",
]

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
_BAD_TEXT = re.compile(r"[\x00-\x1f\x7f]")


class SASLProblem(ValueError):
    """The client's SASL data is malformed; ``str()`` is the reason for a 501 reply."""


@dataclass
class AuthRequest:
    """What the client presented, for ``on_auth(auth, session)``.

    ``password`` is set for PLAIN and LOGIN, ``access_token`` for XOAUTH2; CRAM-MD5 gives
    ``challenge`` and ``challenge_response`` and is checked with `validate_password`.
    """

    method: str
    username: str
    password: str | None = None
    authzid: str | None = None
    access_token: str | None = None
    challenge: str | None = None
    challenge_response: str | None = None

    def validate_password(self, secret: str | bytes) -> bool:
        """CRAM-MD5: does ``secret`` produce the client's digest? (Constant-time compare.)
        For PLAIN and LOGIN: is it the password given?"""
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if self.method == "CRAM-MD5":
            if self.challenge is None or self.challenge_response is None:
                return False
            expected = hmac.new(key, self.challenge.encode("utf-8"), hashlib.md5).hexdigest()
            return hmac.compare_digest(expected.encode(), self.challenge_response.lower().encode())
        if self.password is None:
            return False
        return hmac.compare_digest(key, self.password.encode("utf-8"))

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"AuthRequest(method={self.method!r}, username={self.username!r})"


@dataclass
class AuthResult:
    """Return from ``on_auth`` to accept: ``user`` is kept in ``session.user``;
    ``message`` replaces the default ``235`` text."""

    user: Any
    message: str | None = None


class XOAuth2Error(SMTPError):
    """Refuse an XOAUTH2 attempt the way RFC 7628 clients expect: a ``334`` JSON challenge
    (status, schemes, scope), then the final failure reply."""

    def __init__(
        self,
        code: int = 535,
        message: str = "Error: authentication failed",
        *,
        status: str = "401",
        schemes: str = "bearer",
        scope: str | None = None,
        enhanced: str | None = None,
    ) -> None:
        super().__init__(code, message, enhanced=enhanced)
        details = {"status": status, "schemes": schemes}
        if scope is not None:
            details["scope"] = scope
        self.challenge = json.dumps(details, separators=(",", ":"))


def _text(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLProblem(f"{what} is not valid UTF-8") from None
    if _BAD_TEXT.search(text):
        raise SASLProblem(f"invalid characters in {what}")
    return text


class Mechanism:
    """One SASL exchange."""

    name = ""
    allows_initial_response = True

    def start(self, initial: bytes | None) -> bytes | AuthRequest:
        """Begin, with the initial response if the client sent one."""
        if initial is None:
            return self.first_challenge()
        return self.step(initial)

    def first_challenge(self) -> bytes:
        return b""

    def step(self, response: bytes) -> bytes | AuthRequest:
        raise NotImplementedError


class Plain(Mechanism):
    """RFC 4616: ``authzid NUL authcid NUL password``."""

    name = "PLAIN"

    def step(self, response: bytes) -> AuthRequest:
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SASLProblem("PLAIN needs authzid NUL username NUL password")
        authzid, username, password = (_text(p, "credentials") for p in parts)
        if not username:
            # Some clients send the user as authzid only ("user\0\0pass").
            username = authzid
        if not username:
            raise SASLProblem("empty username")
        return AuthRequest("PLAIN", username, password=password, authzid=authzid or None)


class Login(Mechanism):
    """The LOGIN mechanism: username, then password, each after its own prompt."""

    name = "LOGIN"

    def __init__(self) -> None:
        self.username: str | None = None

    def first_challenge(self) -> bytes:
        return b"Username:"

    def step(self, response: bytes) -> bytes | AuthRequest:
        if self.username is None:
            self.username = _text(response, "username")
            if not self.username:
                raise SASLProblem("empty username")
            return b"Password:"
        return AuthRequest("LOGIN", self.username, password=_text(response, "password"))


class CramMD5(Mechanism):
    """RFC 2195: the server sends a unique challenge, the client ``user hmac-md5-hex``."""

    name = "CRAM-MD5"
    allows_initial_response = False

    def __init__(self, hostname: str) -> None:
        self.challenge = f"<{secrets.randbelow(10**12)}.{secrets.token_hex(6)}@{hostname}>"

    def first_challenge(self) -> bytes:
        return self.challenge.encode("utf-8")

    def step(self, response: bytes) -> AuthRequest:
        username, _, digest = _text(response, "response").rpartition(" ")
        if not username or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
            raise SASLProblem("CRAM-MD5 needs 'username digest'")
        return AuthRequest("CRAM-MD5", username, challenge=self.challenge, challenge_response=digest)


class XOAuth2(Mechanism):
    """Google/Microsoft XOAUTH2: ``user=NAME ^A auth=Bearer TOKEN ^A ^A``."""

    name = "XOAUTH2"

    def step(self, response: bytes) -> AuthRequest:
        fields: dict[str, str] = {}
        for part in response.split(b"\x01"):
            if not part:
                continue
            key, sep, value = _text(part, "XOAUTH2 data").partition("=")
            if not sep:
                raise SASLProblem("malformed XOAUTH2 data")
            fields[key.lower()] = value
        username = fields.get("user", "")
        scheme, _, token = fields.get("auth", "").partition(" ")
        if not username or scheme.lower() != "bearer" or not token:
            raise SASLProblem("XOAUTH2 needs user= and auth=Bearer <token>")
        return AuthRequest("XOAUTH2", username, access_token=token.strip())


def new_mechanism(name: str, hostname: str) -> Mechanism:
    """A fresh exchange for ``name`` (one of :data:`MECHANISMS`)."""
    if name == "PLAIN":
        return Plain()
    if name == "LOGIN":
        return Login()
    if name == "CRAM-MD5":
        return CramMD5(hostname)
    if name == "XOAUTH2":
        return XOAuth2()
    raise KeyError(name)
