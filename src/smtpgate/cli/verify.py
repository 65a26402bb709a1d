"""The command's sender checks: ``--verify``, ``--dns``, ``--dnsbl`` turned into an
`smtpgate.verify.AuthGate` (needs the ``verify`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:
    from ..verify import AuthGate

__all__ = ["build_gate"]

EXTRA_HINT = "pip install 'smtpgate[verify]'"


def build_gate(settings: Settings) -> AuthGate | None:
    """The gate the flags ask for; None without ``--verify`` and ``--dnsbl``.

    Raises `ValueError` with one line for stderr (missing extra, bad name server). The
    ``authserv_id`` is ``--authserv-id``, else ``--name``, else empty: the caller sets it to
    the server's name.
    """
    if settings.verify is None and not settings.dnsbl:
        return None
    try:
        from ..verify import DNSBL, AuthGate, Policy, Resolver, Verifier, VerifyOptions
    except ImportError as error:
        raise ValueError(
            f"--verify and --dnsbl need the 'verify' extra ({error.name} is missing): {EXTRA_HINT}"
        ) from None
    resolver = Resolver(settings.dns or None, timeout=settings.dns_timeout)
    checks = settings.verify is not None
    options = VerifyOptions(spf=checks, helo=checks, dkim=checks, dmarc=checks, arc=checks)
    dnsbl = DNSBL(resolver, settings.dnsbl, threshold=settings.dnsbl_threshold) if settings.dnsbl else None
    authserv_id = settings.authserv_id or settings.name or ""
    return AuthGate(
        Verifier(resolver, options=options, receiver=settings.name or authserv_id),
        authserv_id=authserv_id,
        policy=Policy(enforce=settings.verify == "enforce"),
        dnsbl=dnsbl,
    )
