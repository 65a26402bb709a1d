"""What the server says about itself: the 220 greeting, the HELO/EHLO line, the extensions."""

from __future__ import annotations

from ..session import Session
from .config import ProtocolConfig

__all__ = ["greeting", "helo_text", "extensions"]


class _KeepUnknown(dict[str, str]):
    """str.format_map values: unknown ``{placeholders}`` stay as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def greeting(config: ProtocolConfig) -> str:
    """The text of the 220 greeting."""
    text = f"{config.name} {'LMTP' if config.lmtp else 'ESMTP'}"
    return f"{text} {config.banner}" if config.banner else text


def helo_text(config: ProtocolConfig, session: Session) -> str:
    """The first line of the HELO/EHLO/LHLO reply, from the ``helo_response`` template."""
    template = config.helo_response
    values = [config.name, session.client_hostname or "[unknown]"]
    if "%s" in template:
        parts = template.split("%s")
        out = [parts[0]]
        for i, part in enumerate(parts[1:]):
            out.append(values[i] if i < len(values) else "")
            out.append(part)
        return "".join(out)
    try:
        return template.format_map(_KeepUnknown(name=values[0], client_hostname=values[1]))
    except (ValueError, IndexError):  # SMTPServer checks the option; a bare config may not
        return template


def extensions(config: ProtocolConfig, session: Session, *, auth: bool, forwarding: list[str]) -> list[str]:
    """The EHLO keywords, in order; ``auth``: offer AUTH now."""
    ext = []
    if not config.hide_pipelining:
        ext.append("PIPELINING")
    if not config.hide_8bitmime:
        ext.append("8BITMIME")
    if not config.hide_smtputf8:
        ext.append("SMTPUTF8")
    if not config.hide_enhancedstatuscodes:
        ext.append("ENHANCEDSTATUSCODES")
    if not config.hide_dsn:
        ext.append("DSN")
    ext.extend(forwarding)
    if auth:
        ext.append("AUTH " + " ".join(config.auth_methods))
    if (
        config.starttls
        and not session.secure
        and not config.hide_starttls
        and "STARTTLS" not in config.disabled_commands
    ):
        ext.append("STARTTLS")
    if session.secure and not config.hide_requiretls:
        ext.append("REQUIRETLS")
    if config.size:
        ext.append("SIZE" if config.hide_size else f"SIZE {config.size}")
    if config.chunking and "BDAT" not in config.disabled_commands:
        ext.append("CHUNKING")
        ext.append("BINARYMIME")
    return ext
