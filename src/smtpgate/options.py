"""Server options: names, defaults and validation at construction time."""

from __future__ import annotations

import difflib
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from .tls import TLSOptions, TLSSettings, check_tls_options

if TYPE_CHECKING:
    from .sasl import AuthRequest
    from .session import Address, Session
    from .stream import DataStream

__all__ = [
    "ServerOptions",
    "ServerSettings",
    "build_options",
    "HANDLER_ARGUMENTS",
    "HANDLER_NAMES",
    "COMMAND_NAMES",
    "Trust",
]

# What each handler is called with (positional arguments, in order).
HANDLER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "on_connect": ("session",),
    "on_secure": ("ssl_object", "session"),
    "on_auth": ("auth", "session"),
    "on_mail_from": ("address", "session"),
    "on_rcpt_to": ("address", "session"),
    "on_data": ("stream", "session"),
    "on_close": ("session",),
}
HANDLER_NAMES = tuple(HANDLER_ARGUMENTS)

# The commands smtpgate implements: what ``disabled_commands`` may name.
COMMAND_NAMES = frozenset(
    {"HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "HELP", "EXPN"}
    | {"STARTTLS", "AUTH", "XCLIENT", "XFORWARD"}
)

Trust = bool | str | Sequence[str] | Callable[[str], bool]
"""Whom to trust: ``True``/``"*"`` (everyone), ``False`` (no one), addresses and CIDR
networks, or a function of the peer's IP address returning True to trust it."""


def _fqdn() -> str:
    try:
        return socket.getfqdn() or "localhost"
    except OSError:  # pragma: no cover - depends on the host
        return "localhost"


# The options are declared here (the TLS ones in `tls`): `ServerOptions` holds names and
# defaults at run time; `ServerSettings` states, for the type checker, what a caller may
# pass. A test keeps the two in step.
@dataclass
class ServerOptions(TLSOptions):
    """Every option of `smtpgate.SMTPServer`, with its default.

    The configuration reference describes each one.
    """

    # identity
    name: str = field(default_factory=_fqdn)
    banner: str = ""
    helo_response: str = "%s Nice to meet you, %s"
    lmtp: bool = False
    # limits
    size: int = 0
    max_clients: int = 0
    max_recipients: int = 0
    max_command_length: int = 16384
    max_unrecognized_commands: int = 10
    socket_timeout: float = 60.0
    close_timeout: float = 30.0
    handler_timeout: float | None = None
    reverse_lookup_timeout: float = 1.5
    # behaviour
    bare_lf: str = "normalize"
    reject_oversized: bool = True
    accept_unknown_params: bool = False
    disabled_commands: frozenset[str] = frozenset()
    # authentication
    auth_methods: tuple[str, ...] = ("PLAIN", "LOGIN")
    auth_optional: bool = False
    allow_insecure_auth: bool = False
    auth_required_message: str = "Authentication required"
    max_allowed_unauthenticated_commands: int | bool = 10
    auth_failure_delay: float = 1.0
    max_auth_failures: int = 3
    disable_reverse_lookup: bool = False
    use_proxy: Any = False
    proxy_timeout: float = 5.0
    use_xclient: Any = False
    use_xforward: Any = False
    resolver: Callable[..., Any] | None = None
    # EHLO advertising
    hide_size: bool = False
    hide_pipelining: bool = False
    hide_8bitmime: bool = False
    hide_smtputf8: bool = False
    hide_enhancedstatuscodes: bool = False
    hide_starttls: bool = False
    hide_dsn: bool = False
    hide_requiretls: bool = False
    hide_chunking: bool = False
    # TLS (the certificate options come from TLSOptions)
    secure: bool = False
    needs_upgrade: bool = False
    sni_options: Any = None
    # handlers
    on_connect: Callable[..., Any] | None = None
    on_secure: Callable[..., Any] | None = None
    on_auth: Callable[..., Any] | None = None
    on_mail_from: Callable[..., Any] | None = None
    on_rcpt_to: Callable[..., Any] | None = None
    on_data: Callable[..., Any] | None = None
    on_close: Callable[..., Any] | None = None


class ServerSettings(TLSSettings, total=False):
    """`SMTPServer`'s keyword arguments and their types (defaults: `ServerOptions`), so a
    type checker catches a misspelled option or a value of the wrong type."""

    name: str
    banner: str
    helo_response: str
    lmtp: bool
    size: int
    max_clients: int
    max_recipients: int
    max_command_length: int
    max_unrecognized_commands: int
    socket_timeout: float
    close_timeout: float
    handler_timeout: float | None
    reverse_lookup_timeout: float
    bare_lf: Literal["normalize", "reject", "allow"]
    reject_oversized: bool
    accept_unknown_params: bool
    disabled_commands: Iterable[str]
    auth_methods: Sequence[str]
    auth_optional: bool
    allow_insecure_auth: bool
    auth_required_message: str
    max_allowed_unauthenticated_commands: int | Literal[False]
    auth_failure_delay: float
    max_auth_failures: int
    disable_reverse_lookup: bool
    use_proxy: Trust
    proxy_timeout: float
    use_xclient: Trust
    use_xforward: Trust
    resolver: Callable[[str], object] | None
    hide_size: bool
    hide_pipelining: bool
    hide_8bitmime: bool
    hide_smtputf8: bool
    hide_enhancedstatuscodes: bool
    hide_starttls: bool
    hide_dsn: bool
    hide_requiretls: bool
    hide_chunking: bool
    secure: bool
    needs_upgrade: bool
    sni_options: Mapping[str, TLSSettings | TLSOptions] | None
    on_connect: Callable[[Session], object] | None
    on_secure: Callable[[Any, Session], object] | None
    on_auth: Callable[[AuthRequest, Session], object] | None
    on_mail_from: Callable[[Address, Session], object] | None
    on_rcpt_to: Callable[[Address, Session], object] | None
    on_data: Callable[[DataStream, Session], object] | None
    on_close: Callable[[Session], object] | None


_OWN_FIELDS = [f for f in fields(ServerOptions) if f.name not in {t.name for t in fields(TLSOptions)}]
_BOOL = {f.name for f in _OWN_FIELDS if f.type == "bool"}
_TEXT = {f.name for f in _OWN_FIELDS if f.type == "str" and f.name != "bare_lf"}
_COUNTS = {"size", "max_clients", "max_recipients"}
_POSITIVE_INTS = {"max_command_length", "max_unrecognized_commands", "max_auth_failures"}
_SECONDS = {"socket_timeout", "close_timeout", "reverse_lookup_timeout", "proxy_timeout"}


def _check_number(name: str, value: Any, *, integer: bool, minimum: float, strict: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and isinstance(value, float)):
        kind = "an int" if integer else "a number of seconds"
        raise TypeError(f"option {name!r} must be {kind}, got {type(value).__name__}")
    number = float(value)
    if number < minimum or (strict and number == minimum):
        relation = "greater than" if strict else "at least"
        raise ValueError(f"option {name!r} must be {relation} {minimum}, got {value!r}")


def _check_helo_response(template: str) -> None:
    """``%s`` placeholders, or ``{name}`` and ``{client_hostname}``: nothing else."""
    if "%s" in template:
        return
    try:
        template.format(name="mx.example", client_hostname="client.example")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"option 'helo_response': bad placeholder {error}; use %s, or {{name}} and {{client_hostname}}"
        ) from None


def _command_set(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("option 'disabled_commands' must be a list of command names")
    names = []
    for item in value:
        if not isinstance(item, str):
            raise TypeError("option 'disabled_commands' must contain strings")
        name = item.strip().upper()
        if name not in COMMAND_NAMES:
            hint = difflib.get_close_matches(name, COMMAND_NAMES, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else f"; known: {', '.join(sorted(COMMAND_NAMES))}"
            raise ValueError(f"option 'disabled_commands': unknown command {item!r}{extra}")
        names.append(name)
    return frozenset(names)


def _trust_value(name: str, value: Any) -> bool | str | list[str] | Callable[[str], bool]:
    from .proxy import TrustList

    if isinstance(value, bool) or callable(value):
        return value  # type: ignore[no-any-return]
    if value == "*":
        return "*"
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            f"option {name!r} must be True, False, '*', a list of addresses/networks or a function of the address"
        )
    items = list(value)
    try:
        TrustList(items)
    except (TypeError, ValueError) as error:
        raise type(error)(f"option {name!r}: {error}") from None
    return items


def _auth_methods(value: Any) -> tuple[str, ...]:
    from .sasl import MECHANISMS

    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("option 'auth_methods' must be a list such as ['PLAIN', 'LOGIN']")
    methods: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise TypeError("option 'auth_methods' must contain strings")
        method = item.strip().upper()
        if method not in MECHANISMS:
            raise ValueError(f"unknown AUTH method {item!r}; supported: {', '.join(MECHANISMS)}")
        if method not in methods:
            methods.append(method)
    if not methods:
        raise ValueError("option 'auth_methods' must not be empty (disable AUTH with disabled_commands=['AUTH'])")
    return tuple(methods)


def build_options(kwargs: dict[str, Any]) -> ServerOptions:
    """Check ``kwargs`` and return the options; unknown or ill-typed ones raise at once."""
    known = {f.name for f in fields(ServerOptions)}
    for name in kwargs:
        if name not in known:
            hint = difflib.get_close_matches(name.lower(), known, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise TypeError(f"unknown SMTPServer option {name!r}{extra}")
    values = dict(kwargs)
    for name, value in kwargs.items():
        if name in _BOOL and not isinstance(value, bool):
            raise TypeError(f"option {name!r} must be True or False, got {value!r}")
        if name in _COUNTS:
            _check_number(name, value, integer=True, minimum=0, strict=False)
        elif name in _POSITIVE_INTS:
            _check_number(name, value, integer=True, minimum=0, strict=True)
        elif name in _SECONDS:
            _check_number(name, value, integer=False, minimum=0, strict=True)
        elif name == "auth_failure_delay":
            _check_number(name, value, integer=False, minimum=0, strict=False)
        elif name == "max_allowed_unauthenticated_commands":
            if value is not False:
                _check_number(name, value, integer=True, minimum=0, strict=True)
        elif name in ("use_proxy", "use_xclient", "use_xforward"):
            values[name] = _trust_value(name, value)
        elif name == "auth_methods":
            values[name] = _auth_methods(value)
        elif name == "handler_timeout" and value is not None:
            _check_number(name, value, integer=False, minimum=0, strict=True)
        elif name in _TEXT:
            if not isinstance(value, str):
                raise TypeError(f"option {name!r} must be a str, got {type(value).__name__}")
            if any(ch in value for ch in "\r\n\0"):
                raise ValueError(f"option {name!r} must not contain line breaks or NUL")
        elif name == "bare_lf":
            if value not in ("normalize", "reject", "allow"):
                raise ValueError(f"option 'bare_lf' must be 'normalize', 'reject' or 'allow', got {value!r}")
        elif name == "disabled_commands":
            values[name] = _command_set(value)
        elif (name in HANDLER_NAMES or name == "resolver") and value is not None and not callable(value):
            raise TypeError(f"option {name!r} must be callable, got {type(value).__name__}")
    options = ServerOptions(**values)
    check_tls_options(options)
    _check_helo_response(options.helo_response)
    if options.name == "":
        raise ValueError("option 'name' must not be empty")
    if options.max_command_length < 512:
        raise ValueError("option 'max_command_length' must be at least 512 (RFC 5321 section 4.5.3.1.4)")
    if options.needs_upgrade and not options.secure:
        if "STARTTLS" in options.disabled_commands:
            raise ValueError("option 'needs_upgrade' needs STARTTLS, but 'disabled_commands' disables it")
        if options.hide_starttls:
            raise ValueError("option 'needs_upgrade' needs STARTTLS, but 'hide_starttls' hides it")
    return options
