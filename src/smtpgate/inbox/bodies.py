"""Request bodies read the way Mailpit's clients expect them to be read.

Mailpit decodes bodies with Go's ``encoding/json``, which matches a key to a field
case-insensitively (``{"ids": [...], "read": true}`` works like ``IDs``/``Read``) and
ignores unknown keys, whatever the ``Content-Type`` says. `parse_fields` does the same for
the fields a handler names and checks their types; a body labelled as a form that is not
JSON is read as a form (``ids=a&ids=b&Read=true``, as the PyPI ``mailpit-api-client``
sends it).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = ["BodyError", "Kind", "body_text", "fold_keys", "json_object", "parse_fields"]

Kind = Literal["bool", "str", "strings"]
"""The type of a field: ``true``/``false``, a string, or a list of strings."""

_FORM = "application/x-www-form-urlencoded"
_TRUE = {"true": True, "1": True, "on": True, "yes": True, "false": False, "0": False, "off": False, "no": False}


class BodyError(ValueError):
    """The body is not what the endpoint takes; the text says why (answered ``400``)."""


def body_text(raw: bytes) -> str:
    """The body as text; `BodyError` unless it is UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(f"the body is not UTF-8 (byte {error.start})") from None


def json_object(text: str, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object body (``{}`` for an empty body or ``null`` when ``optional``)."""
    if not text.strip():
        if optional:
            return {}
        raise BodyError("expected a JSON body")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise BodyError(f"invalid JSON body: {error}") from None
    except RecursionError:
        raise BodyError("invalid JSON body: nested too deeply") from None
    if data is None and optional:
        return {}
    if not isinstance(data, dict):
        raise BodyError("the JSON body must be an object")
    return data


def parse_fields(
    raw: bytes, content_type: str, fields: Mapping[str, Kind], *, optional: bool = False
) -> dict[str, Any]:
    """The named ``fields`` found in a JSON object (or form) body, by their canonical
    names. A field given as ``null`` counts as absent. An empty body is ``{}`` when
    ``optional``, else an error."""
    text = body_text(raw)
    looks_json = text.lstrip()[:1] in ("{", "[", '"') or text.strip() == "null"
    if text.strip() and not looks_json and content_type.split(";")[0].strip().lower() == _FORM:
        return _from_form(text, fields)  # curl -d and urllib label JSON as a form: JSON first
    data = json_object(text, optional=True)
    if not data and not text.strip() and not optional:
        raise BodyError("expected a JSON body")
    found: dict[str, Any] = {}
    exact: set[str] = set()
    for key, value in data.items():
        name = _field_name(key, fields)
        if name is None or value is None or (name in exact and key != name):
            continue  # unknown, null, or an exact match already won (as in Go)
        found[name] = _checked(name, fields[name], value)
        if key == name:
            exact.add(name)
    return found


def fold_keys(data: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``data`` with keys that match one of ``names`` in another case renamed to it
    (an exact match wins, as in Go); other keys are kept as they are."""
    wanted: dict[str, Kind] = {name: "strings" for name in names}
    folded: dict[str, Any] = {}
    for key, value in data.items():
        name = _field_name(key, wanted) or key
        if name not in folded or key == name:
            folded[name] = value
    return folded


def _field_name(key: str, fields: Mapping[str, Kind]) -> str | None:
    if key in fields:
        return key
    folded = key.casefold()
    for name in fields:
        if name.casefold() == folded:
            return name
    return None


def _checked(name: str, kind: Kind, value: Any) -> Any:
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "strings" and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    expected = {"bool": "true or false", "str": "a string", "strings": "an array of strings"}[kind]
    raise BodyError(f"{name} must be {expected}, got {json.dumps(value)[:80]}")


def _from_form(text: str, fields: Mapping[str, Kind]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=10_000)
    except ValueError as error:
        raise BodyError(f"invalid form body: {error}") from None
    for key, value in pairs:
        name = _field_name(key.removesuffix("[]"), fields)
        if name is None:
            continue
        kind = fields[name]
        if kind == "strings":
            found.setdefault(name, []).append(value)
        elif kind == "str":
            found[name] = value
        else:
            flag = _TRUE.get(value.strip().lower())
            if flag is None:
                raise BodyError(f"{name} must be true or false, got {value[:80]!r}")
            found[name] = flag
    return found
