"""Where a message goes before the ``250``: the sink contract and the sinks that ship.

``parse_sink("maildir:./mail")`` makes a sink from a spec; other packages of smtpgate (the
inbox, the queue) and applications add schemes with `register_sink`. See `base` for the
contract every sink keeps.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .base import Delivery, MessageInfo, Sink, SinkError, SinkFull
from .files import DirSink, MaildirSink, MboxSink, StdoutSink

__all__ = [
    "Sink",
    "Delivery",
    "MessageInfo",
    "SinkError",
    "SinkFull",
    "MaildirSink",
    "MboxSink",
    "DirSink",
    "StdoutSink",
    "parse_sink",
    "register_sink",
    "sink_kinds",
]

SinkFactory = Callable[[str], Sink]
"""Makes a sink from the part of its spec after ``scheme:`` (may raise `SinkError`)."""

_factories: dict[str, SinkFactory] = {
    "maildir": MaildirSink,
    "mbox": MboxSink,
    "dir": DirSink,
}


# Sinks of smtpgate's optional parts, imported only when a spec names them:
# scheme -> ("module:factory", the extra that brings its dependencies or "").
_lazy: dict[str, tuple[str, str]] = {
    "inbox": ("smtpgate.inbox.sink:InboxSink", ""),
    "redis": ("smtpgate.queue.redis:redis_sink", "scale"),
    "rediss": ("smtpgate.queue.redis:rediss_sink", "scale"),
}


def register_sink(scheme: str, factory: SinkFactory) -> None:
    """Make ``parse_sink`` understand ``scheme:REST`` by calling ``factory(REST)``."""
    scheme = scheme.strip().lower()
    if not scheme.isidentifier() or scheme == "stdout":
        raise ValueError(f"invalid sink scheme {scheme!r}")
    _factories[scheme] = factory


def sink_kinds() -> list[str]:
    """The schemes ``parse_sink`` knows, ``stdout`` included."""
    return [*_factories, *(k for k in _lazy if k not in _factories), "stdout"]


def _factory(kind: str) -> SinkFactory | None:
    factory = _factories.get(kind)
    if factory is None and kind in _lazy:
        target, extra = _lazy[kind]
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            hint = f" (pip install 'smtpgate[{extra}]')" if extra else ""
            raise SinkError(f"sink {kind!r} needs a package that is missing: {error.name}{hint}") from None
        factory = getattr(module, attribute)
        _factories[kind] = factory
    return factory


def parse_sink(spec: str) -> Sink:
    """``maildir:DIR``, ``mbox:FILE``, ``dir:DIR``, ``stdout`` or a registered ``scheme:REST``.

    Raises `SinkError` (a `ValueError`) with one line when the spec is wrong or the sink
    cannot store (a folder it cannot make or write)."""
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "stdout" and not rest:
        return StdoutSink()
    factory = _factory(kind) if sep and rest else None
    if factory is None:
        forms = ", ".join(f"{name}:..." for name in sink_kinds() if name != "stdout")
        raise SinkError(f"invalid sink {spec!r}: expected {forms} or stdout")
    return factory(rest)
