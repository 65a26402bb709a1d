"""DKIM signing (RFC 6376) for mail the server sends on, with dkimpy."""

from __future__ import annotations

import os
from collections.abc import Sequence

import dkim

__all__ = ["sign"]


def sign(
    message: bytes,
    selector: str,
    domain: str,
    key: bytes | str | os.PathLike[str],
    *,
    headers: Sequence[str] | None = None,
    canonicalization: tuple[str, str] = ("relaxed", "relaxed"),
) -> bytes:
    """The message with a ``DKIM-Signature`` field on top (rsa-sha256).

    :param key: the private key as PEM bytes or text, or the path of a PEM file (what
        ``opendkim-genkey`` writes as ``SELECTOR.private``).
    :param headers: header fields to sign (default: dkimpy's list, From signed twice so no
        second From can be added).
    :param canonicalization: (header, body), each ``"relaxed"`` or ``"simple"``.

    Raises `ValueError` for a bad key or parameters.
    """
    if isinstance(key, os.PathLike) or (isinstance(key, str) and not key.lstrip().startswith("-----")):
        with open(key, "rb") as file:
            pem = file.read()
    else:
        pem = key.encode("ascii") if isinstance(key, str) else key
    if any(mode not in ("relaxed", "simple") for mode in canonicalization):
        raise ValueError(f"canonicalization must be relaxed or simple, got {canonicalization!r}")
    try:
        field: bytes = dkim.sign(
            message,
            selector.encode("ascii"),
            domain.encode("ascii"),
            pem,
            canonicalize=(canonicalization[0].encode(), canonicalization[1].encode()),
            include_headers=[h.encode("ascii") for h in headers] if headers is not None else None,
        )
    except dkim.DKIMException as error:
        raise ValueError(f"cannot sign: {error}") from None
    return field + message
