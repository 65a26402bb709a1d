"""The kinds of values the command's settings take: converters of flag text and TOML values.

Each converter raises `argparse.ArgumentTypeError` with a one-line reason, which argparse
prints after the flag's name and the config file after the key's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..limits.policy import parse_rate
from .options import Kind, Switch

N = TypeVar("N", int, float)

__all__ = [
    "ADDRESS",
    "COUNT",
    "DURATION",
    "FILE",
    "HTTP_ADDRESS",
    "PORT",
    "POSITIVE",
    "RATE",
    "SECONDS",
    "SINK",
    "SIZE",
    "SWITCH",
    "TEXT",
    "address_arg",
    "count_arg",
    "duration_arg",
    "http_arg",
    "parse_address",
    "parse_http_address",
    "seconds_arg",
]


def parse_port(text: str | int) -> int:
    """A port number, 0 to 65535; raises `ValueError`."""
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"invalid port {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} out of range")
    return number


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port``; raises `ValueError`."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, parse_port(port)


def parse_http_address(text: str) -> tuple[str, int]:
    """``host:port``, ``[ipv6]:port``, ``:port`` or ``port`` (host 127.0.0.1)."""
    value = text.strip()
    if value.isdigit():
        return "127.0.0.1", parse_port(value)
    if value.startswith(":") and value[1:].isdigit():
        return "127.0.0.1", parse_port(value[1:])
    return parse_address(value)


def port_arg(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def address_arg(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def http_arg(text: str) -> tuple[str, int]:
    try:
        return parse_http_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


_SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}


def size_arg(text: str) -> int:
    """A byte count with an optional K/M/G suffix (powers of 1024)."""
    value = text.strip().upper().removesuffix("B")
    scale = _SIZE_UNITS.get(value[-1:], 1)
    if scale > 1:
        value = value[:-1]
    try:
        number = int(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 10485760, 10M)") from None
    if number < 0:
        raise argparse.ArgumentTypeError("size must not be negative")
    return number


def show_size(number: Any) -> str:
    """``25M`` for 25 MiB: the largest unit that divides the size."""
    for unit, scale in reversed(_SIZE_UNITS.items()):
        if number and number % scale == 0:
            return f"{number // scale}{unit}"
    return str(number)


def _number(text: str, convert: Callable[[str], N], invalid: str, fits: Callable[[N], bool], problem: str) -> N:
    """``convert(text)``; ``invalid`` (with the text) when it is no number, ``problem``
    when it does not ``fit``."""
    try:
        number = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{invalid} {text!r}") from None
    if not fits(number):
        raise argparse.ArgumentTypeError(problem)
    return number


def seconds_arg(text: str) -> float:
    return _number(text, float, "invalid number of seconds", lambda n: n > 0, "seconds must be greater than 0")


def positive_arg(text: str) -> float:
    return _number(text, float, "invalid number", lambda n: n > 0, "must be greater than 0")


def count_arg(text: str) -> int:
    return _number(text, int, "invalid number", lambda n: n >= 0, "must not be negative")


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration_arg(text: str) -> float:
    """Seconds, or a number with a unit: ``90s``, ``30m``, ``12h``, ``5d``, ``1w``."""
    value = text.strip().lower()
    scale = _DURATION_UNITS.get(value[-1:], 0.0)
    if scale:
        value = value[:-1]
    try:
        number = float(value) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 3600, 90m, 12h, 5d)") from None
    if number < 0:
        raise argparse.ArgumentTypeError("a duration must not be negative")
    return number


def show_number(number: Any) -> str:
    """``60`` for 60.0, ``0.5`` for 0.5: the number as it reads back, without a needless ``.0``."""
    value = float(number)
    return str(int(value)) if value.is_integer() else repr(value)


def show_duration(seconds: Any) -> str:
    """``5d`` for five days: the largest unit (up to days) that divides the duration."""
    for unit in ("d", "h", "m"):
        scale = _DURATION_UNITS[unit]
        if seconds and seconds % scale == 0:
            return f"{show_number(seconds / scale)}{unit}"
    return show_number(seconds)


def rate_arg(text: str) -> str:
    """A rate like ``10/min``, checked and kept as written."""
    try:
        parse_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


class _Sink(Kind[str]):
    """A sink spec; in the config file the path after ``kind:`` is relative to the file."""

    def resolve(self, value: Any, base: str) -> Any:
        kind, sep, where = str(value).partition(":")
        if not sep or where.startswith("//"):
            return value
        return f"{kind}:{os.path.join(base, os.path.expanduser(where))}"


TEXT = Kind(str)
FILE = Kind(str, metavar="FILE", relative=True)
SINK = _Sink(str, metavar="SPEC")
SWITCH = Switch()
PORT = Kind(port_arg, (int,), "PORT")
ADDRESS = Kind(address_arg, (str,), "HOST:PORT")
HTTP_ADDRESS = Kind(http_arg, (str,), "HOST:PORT")
SIZE = Kind(size_arg, (int, str), "BYTES", show=show_size)
COUNT = Kind(count_arg, (int,), "N")
SECONDS = Kind(seconds_arg, (float, int), "SECONDS", show=show_number)
POSITIVE = Kind(positive_arg, (float, int), "N", show=show_number)
DURATION = Kind(duration_arg, (float, int, str), "DURATION", show=show_duration)
RATE = Kind(rate_arg, (str,), "N/min")
