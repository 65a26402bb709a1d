"""ProtocolConfig: what the protocol core needs to know of the server options."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProtocolConfig"]


@dataclass(frozen=True)
class ProtocolConfig:
    """What the core needs to know of the server options (the configuration reference has each)."""

    name: str = "localhost"
    banner: str = ""
    lmtp: bool = False
    size: int = 0
    hide_size: bool = False
    hide_pipelining: bool = False
    hide_8bitmime: bool = False
    hide_smtputf8: bool = False
    hide_enhancedstatuscodes: bool = False
    hide_dsn: bool = False
    hide_requiretls: bool = False
    chunking: bool = True
    starttls: bool = False
    hide_starttls: bool = False
    needs_upgrade: bool = False
    disabled_commands: frozenset[str] = frozenset()
    helo_response: str = "%s Nice to meet you, %s"
    max_recipients: int = 0
    max_command_length: int = 16384
    max_unrecognized_commands: int = 10
    bare_lf: str = "normalize"
    reject_oversized: bool = True
    accept_unknown_params: bool = False
    auth_methods: tuple[str, ...] = ()  # empty: AUTH is not offered
    auth_optional: bool = False
    allow_insecure_auth: bool = False
    auth_required_message: str = "Authentication required"
    max_unauthenticated_commands: int = 10  # 0: no limit
    max_auth_failures: int = 3
