"""Reading request parameters and bodies for the inbox API; `Problem` is the error a
handler raises to answer ``{"Error": text}`` with a status."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from .bodies import BodyError, Kind, body_text, json_object, parse_fields
from .search import SearchError, parse_date

__all__ = [
    "MAX_START",
    "Problem",
    "int_param",
    "mailbox_param",
    "tz_param",
    "json_body",
    "body_fields",
    "moment",
    "memory",
    "seconds",
]

MAX_START = 2**53
"""A ``start`` beyond this is taken as this (past the end: an empty page)."""


class Problem(Exception):
    """An error answered as ``{"Error": text}`` with a status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def int_param(request: web.Request, name: str, default: int, low: int = 0, high: int | None = None) -> int:
    """A whole-number query parameter, at least ``low``, capped at ``high``."""
    text = request.query.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise Problem(400, f"{name} must be a whole number, got {text[:40]!r}") from None
    if value < low:
        raise Problem(400, f"{name} must be at least {low}")
    return value if high is None else min(value, high)


def mailbox_param(request: web.Request) -> str | None:
    """The ``mailbox`` query parameter (None when absent or empty)."""
    value = request.query.get("mailbox", "").strip()
    return value or None


def tz_param(request: web.Request) -> Any:
    """The ``tz`` query parameter as a time zone (None when absent)."""
    name = request.query.get("tz", "").strip()
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Problem(400, f"unknown time zone {name!r} (example: Europe/Paris)") from None


async def json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object (``{}`` for none when ``optional``)."""
    try:
        return json_object(body_text(await request.read()), optional=optional)
    except BodyError as error:
        raise Problem(400, str(error)) from None


async def body_fields(request: web.Request, fields: Mapping[str, Kind], *, optional: bool = False) -> dict[str, Any]:
    """The named fields of a JSON (or form) body, keys matched as Go does (any case)."""
    try:
        return parse_fields(await request.read(), request.content_type, fields, optional=optional)
    except BodyError as error:
        raise Problem(400, str(error)) from None


def moment(request: web.Request, name: str) -> int | None:
    """A time parameter (``before``, ``since``, ``until``) in epoch milliseconds: a date
    as ``before:`` takes it (``tz`` for one without an offset), or Unix seconds."""
    text = request.query.get(name, "").strip()
    if not text:
        return None
    if text.isdigit() and len(text) <= 12:
        return int(text) * 1000
    try:
        return int(parse_date(text, tz_param(request) or timezone.utc).timestamp() * 1000)
    except SearchError as error:
        raise Problem(400, f"{name}: {error}") from None


def memory() -> int:
    """Resident memory of this process in bytes (Linux), else 0."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def seconds(request: web.Request, name: str, default: float, high: float) -> float:
    """A number of seconds from 0 to ``high`` (``10`` or ``10s``)."""
    text = request.query.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise Problem(400, f"{name} must be a number of seconds, got {text!r}") from None
    if not 0 <= value <= high:
        raise Problem(400, f"{name} must be from 0 to {high:g} seconds")
    return value
