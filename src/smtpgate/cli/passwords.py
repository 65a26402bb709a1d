"""Password hashes for ``--auth-file`` and the ``hash-password`` subcommand.

A hash is ``scrypt$N$r$p$SALT$HASH``: the parameters of `hashlib.scrypt`, then the
salt and the 32-byte derived key in base64. Plaintext passwords are never accepted.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["hash_password", "verify_password", "load_auth_file", "AuthFileError", "hash_password_command"]

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_LENGTH = 32
_MAX_N = 2**20


class AuthFileError(ValueError):
    """The auth file cannot be used; ``str()`` says which line and why."""


@dataclass(frozen=True)
class ScryptHash:
    """A parsed ``scrypt$N$r$p$salt$hash`` string."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> ScryptHash:
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a scrypt hash (make one with: smtpgate hash-password)")
        try:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, key = _b64decode(parts[4]), _b64decode(parts[5])
        except (ValueError, binascii.Error):
            raise ValueError("malformed scrypt hash") from None
        if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError("scrypt parameters out of range")
        if len(salt) < 8 or len(key) < 16:
            raise ValueError("scrypt salt or hash too short")
        return cls(n, r, p, salt, key)

    def derive(self, password: str) -> bytes:
        return hashlib.scrypt(
            password.encode("utf-8"),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=128 * self.n * self.r * self.p + 2**20,
            dklen=len(self.key),
        )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new ``scrypt$N$r$p$salt$hash`` string for ``password`` (random 16-byte salt)."""
    salt = os.urandom(16)
    key = ScryptHash(n, r, p, salt, b"\0" * _KEY_LENGTH).derive(password)
    return f"scrypt${n}${r}${p}${_b64encode(salt)}${_b64encode(key)}"


_DUMMY = ScryptHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"smtpgate-no-user", b"\0" * _KEY_LENGTH)


def verify_password(password: str, stored: ScryptHash | None) -> bool:
    """Does ``password`` match? Compared in constant time; an unknown user (``None``)
    costs the same work as a known one."""
    target = stored if stored is not None else _DUMMY
    derived = target.derive(password)
    return hmac.compare_digest(derived, target.key) and stored is not None


def load_auth_file(path: str) -> Mapping[str, ScryptHash]:
    """Read ``user:hash`` lines (``#`` comments and blank lines allowed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        raise AuthFileError(f"cannot read auth file {path!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise AuthFileError(f"auth file {path!r} is not UTF-8") from None
    users: dict[str, ScryptHash] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.rpartition(":")
        if not sep or not user:
            raise AuthFileError(f"auth file {path!r} line {number}: expected user:hash")
        try:
            users[user] = ScryptHash.parse(hashed)
        except ValueError as error:
            raise AuthFileError(f"auth file {path!r} line {number}: {error}") from None
    return users


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise ValueError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def hash_password_command(user: str | None) -> int:
    """``smtpgate hash-password [USER]``: read a password, print its hash (``USER:hash``
    with a user name, ready for the auth file)."""
    if user is not None and (":" in user or not user.strip()):
        print("smtpgate: hash-password: the user name must be non-empty and contain no ':'", file=sys.stderr)
        return 2
    try:
        password = _read_password()
    except (ValueError, EOFError, KeyboardInterrupt) as error:
        reason = str(error) or "no password given"
        print(f"smtpgate: hash-password: {reason}", file=sys.stderr)
        return 1
    if not password:
        print("smtpgate: hash-password: empty password", file=sys.stderr)
        return 1
    hashed = hash_password(password)
    print(f"{user}:{hashed}" if user is not None else hashed)
    return 0
