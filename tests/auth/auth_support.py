"""Helpers for the AUTH tests: credentials, SASL blobs, raw exchanges over plaintext or TLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from typing import Any

from smtpgate import AuthResult, SMTPError, XOAuth2Error

USER = "alice@example.com"
PASSWORD = "Pa55-w0rd-tr1cky"
TOKEN = "ya29.a0AfH6SMBxTOKENxyz"
ALL_METHODS = ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]


class Authenticator:
    """on_auth: accepts USER with PASSWORD (PLAIN, LOGIN, CRAM-MD5) or TOKEN (XOAUTH2).

    Records every AuthRequest. ``refuse`` (an SMTPError) or ``result=None`` change what a
    failure looks like; ``asynchronous`` makes it a coroutine function."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.sessions: list[Any] = []
        self.failure: SMTPError | None = SMTPError(535, "Bad username or password")
        self._lock = threading.Lock()

    def check(self, auth: Any, session: Any) -> AuthResult:
        with self._lock:
            self.requests.append(auth)
            self.sessions.append(session)
        if auth.method == "XOAUTH2":
            if auth.username == USER and auth.access_token == TOKEN:
                return AuthResult(user={"oauth": auth.username})
            raise XOAuth2Error(scope="https://mail.example/")
        if auth.username == USER and auth.validate_password(PASSWORD):
            return AuthResult(user={"name": auth.username, "method": auth.method})
        if self.failure is None:
            return None  # type: ignore[return-value]  # refuse by returning nothing
        raise self.failure

    def __call__(self, auth: Any, session: Any) -> AuthResult:
        return self.check(auth, session)


class AsyncAuthenticator(Authenticator):
    async def __call__(self, auth: Any, session: Any) -> AuthResult:  # type: ignore[override]
        return self.check(auth, session)


def b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def plain_blob(user: str = USER, password: str = PASSWORD, authzid: str = "") -> str:
    return b64(f"{authzid}\0{user}\0{password}")


def xoauth2_blob(user: str = USER, token: str = TOKEN) -> str:
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def cram_md5_response(challenge_b64: str, user: str = USER, password: str = PASSWORD) -> str:
    challenge = base64.b64decode(challenge_b64)
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return b64(f"{user} {digest}")
