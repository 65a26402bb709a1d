"""How a setting of the command is declared once and read from flags and the config file.

A setting is a field of a settings dataclass whose default comes from `option` (or
`repeated`, `table`). The field's metadata holds an `Option`: its flag, help text and
`Kind`. From that one declaration come the argparse argument (with the default stated in
its help), the config file's type check and conversion, the resolution of paths relative
to the config file, and the default shown in the docs.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Generic, TypeVar

__all__ = [
    "Choice",
    "Declared",
    "Group",
    "Kind",
    "ListOrSwitch",
    "Option",
    "OptionalChoice",
    "Repeated",
    "Switch",
    "Table",
    "UsageError",
    "add_groups",
    "declared",
    "from_config",
    "option",
    "repeated",
    "table",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_OPTION = "smtpgate.cli.option"


class UsageError(Exception):
    """A bad flag, config file or value: one line for stderr, exit status 2."""


class Kind(Generic[T_co]):
    """What a setting's values look like: as a flag's argument and as a TOML value.

    *parse* turns a flag's text into the value (raising `argparse.ArgumentTypeError` with
    a one-line reason); a TOML value of one of the *toml* types goes through
    ``parse(str(value))``. *relative* values (paths) are taken relative to the config
    file's directory. *show* writes a default for the help and the docs.
    """

    def __init__(
        self,
        parse: Callable[[str], T_co],
        toml: tuple[type, ...] = (str,),
        metavar: str | None = None,
        *,
        show: Callable[[Any], str] = str,
        relative: bool = False,
    ) -> None:
        self.parse = parse
        self.toml = toml
        self.metavar = metavar
        self.show = show
        self.relative = relative

    def flag_arguments(self, default: Any) -> dict[str, Any]:
        """The keyword arguments of ``add_argument`` (besides dest, help and metavar)."""
        return {"type": self.parse}

    def from_toml(self, value: Any) -> T_co:
        """A config file's value (of a *toml* type) as the setting's value."""
        return self.parse(str(value))

    def resolve(self, value: Any, base: str) -> Any:
        """The value with a relative path taken from the config file's directory *base*."""
        if self.relative and isinstance(value, str):
            return os.path.join(base, os.path.expanduser(value))
        return value


class Switch(Kind[bool]):
    """On or off: the flag sets the opposite of the default (``--lmtp``, ``--no-uvloop``)."""

    def __init__(self) -> None:
        super().__init__(bool, (bool,))

    def flag_arguments(self, default: Any) -> dict[str, Any]:
        return {"action": "store_const", "const": not default}

    def from_toml(self, value: Any) -> bool:
        return bool(value)


class Choice(Kind[str]):
    """One of a few words; the config file's error lists them."""

    def __init__(self, *choices: str) -> None:
        super().__init__(str, (str,))
        self.choices = choices

    def flag_arguments(self, default: Any) -> dict[str, Any]:
        return {"choices": self.choices}

    def from_toml(self, value: Any) -> str:
        if value not in self.choices:
            if len(self.choices) == 2:
                raise ValueError(f"must be {self.choices[0]!r} or {self.choices[1]!r}")
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return str(value)


class OptionalChoice(Kind["str | None"]):
    """Off, or one of a few modes: ``--verify`` alone means *const*, ``--verify=MODE`` that
    mode; in the config file true, false or a mode."""

    def __init__(self, *choices: str, const: str) -> None:
        super().__init__(str, (bool, str))
        self.choices = choices
        self.const = const

    def flag_arguments(self, default: Any) -> dict[str, Any]:
        return {"nargs": "?", "const": self.const, "choices": self.choices}

    def from_toml(self, value: Any) -> str | None:
        if isinstance(value, bool):
            return self.const if value else None
        if value not in self.choices:
            raise ValueError(f"must be true, false, {' or '.join(repr(mode) for mode in self.choices)}")
        return str(value)


class _ListOrTrue(argparse.Action):
    """``--flag`` alone stores True; ``--flag A B`` stores ``["A", "B"]``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = [] if values is None or isinstance(values, str) else list(values)
        setattr(namespace, self.dest, items or True)


class ListOrSwitch(Kind["bool | list[str]"]):
    """Off, on for everyone, or on for a list (``--proxy-protocol [TRUSTED ...]``)."""

    def __init__(self) -> None:
        super().__init__(lambda text: [text], (bool, list))

    def flag_arguments(self, default: Any) -> dict[str, Any]:
        return {"nargs": "*", "action": _ListOrTrue}

    def from_toml(self, value: Any) -> bool | list[str]:
        return [str(item) for item in value] if isinstance(value, list) else bool(value)


class Repeated(Kind["list[T_co]"]):
    """A flag given any number of times; a list in the config file."""

    def __init__(self, item: Kind[T_co]) -> None:
        super().__init__(lambda text: [item.parse(text)], (list,), item.metavar)
        self.item = item

    def flag_arguments(self, default: Any) -> dict[str, Any]:
        return {"action": "append", "type": self.item.parse}

    def from_toml(self, value: Any) -> list[T_co]:
        return [self.item.parse(str(item)) for item in value]


def _only_in_a_file(text: str) -> dict[str, Any]:
    raise argparse.ArgumentTypeError("a table is set in the config file only")


class Table(Kind["dict[str, Any]"]):
    """A TOML table, only in the config file (``[server]``)."""

    def __init__(self) -> None:
        super().__init__(_only_in_a_file, (dict,))

    def from_toml(self, value: Any) -> dict[str, Any]:
        return dict(value)


@dataclass(frozen=True)
class Option:
    """The declaration of one setting besides its name and default."""

    flag: str | None
    help: str
    kind: Kind[Any]
    metavar: str | None = None
    shown: str | None = None

    def default_text(self, default: Any) -> str:
        """The default as the docs' tables write it (Markdown)."""
        if self.shown is not None:
            return self.shown
        if default is None or (isinstance(default, (list, dict)) and not default):
            return "none"
        if default is False:
            return "off"
        return f"`{self.kind.show(default)}`"

    def help_text(self, default: Any) -> str:
        """The help line: "(repeatable)" when it is, and the default unless it goes without
        saying (a switch, nothing)."""
        line = f"{self.help} (repeatable)" if isinstance(self.kind, Repeated) else self.help
        text = self.default_text(default).replace("`", "")
        if isinstance(self.kind, Switch) or text in ("none", "off"):
            return line
        return f"{line}; default: {text}"

    def add_to(self, group: Any, dest: str, default: Any) -> None:
        """Add the flag to an argparse parser or argument group."""
        if self.flag is None:
            return
        metavar = self.metavar or self.kind.metavar
        extra: dict[str, Any] = {} if metavar is None else {"metavar": metavar}
        group.add_argument(
            self.flag, dest=dest, help=self.help_text(default), **extra, **self.kind.flag_arguments(default)
        )


def option(
    default: T,
    kind: Kind[T],
    flag: str | None,
    help: str,
    *,
    metavar: str | None = None,
    shown: str | None = None,
) -> T:
    """A setting's default, with its declaration in the field's metadata."""
    declaration = Option(flag, help, kind, metavar, shown)
    return field(default=default, metadata={_OPTION: declaration})


def repeated(kind: Kind[T], flag: str, help: str, *, metavar: str | None = None, shown: str | None = None) -> list[T]:
    """A repeatable flag (a list in the config file); the default is the empty list."""
    declaration = Option(flag, help, Repeated(kind), metavar, shown)
    return field(default_factory=list, metadata={_OPTION: declaration})


def table(help: str) -> dict[str, Any]:
    """A config-file-only table; the default is empty."""
    return field(default_factory=dict, metadata={_OPTION: Option(None, help, Table())})


@dataclass(frozen=True)
class Declared:
    """One declared setting: its name (the field, and the config key), default and `Option`."""

    name: str
    default: Any
    option: Option

    @property
    def default_text(self) -> str:
        return self.option.default_text(self.default)

    def add_to(self, parser: Any, *, with_default: bool = False) -> None:
        """Add the flag to another command's parser; *with_default* stores the default when
        the flag is not given (the serving command's parser stores nothing then)."""
        self.option.add_to(parser, self.name, self.default)
        if with_default:
            parser.set_defaults(**{self.name: self.default})


def _default(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    raise TypeError(f"setting {item.name!r} has no default")


def declared(cls: type[Any]) -> Iterator[Declared]:
    """The settings declared by a settings dataclass (or one of its groups), in order."""
    for item in fields(cls):
        declaration = item.metadata.get(_OPTION)
        if isinstance(declaration, Option):
            yield Declared(item.name, _default(item), declaration)


class Group:
    """A topic of settings: a dataclass whose *title* heads its flags in ``--help``."""

    title: ClassVar[str]
    description: ClassVar[str | None] = None


def add_groups(parser: argparse.ArgumentParser, groups: Sequence[type[Group]]) -> None:
    """One argparse argument group per settings group, with its flags."""
    for cls in groups:
        group = parser.add_argument_group(cls.title, cls.description)
        for setting in declared(cls):
            setting.option.add_to(group, setting.name, setting.default)


def _check_type(path: str, key: str, value: Any, kinds: tuple[type, ...]) -> None:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise UsageError(f"config file {path!r}: {key!r} must be {kinds[0].__name__}, got {value!r}")


def from_config(path: str, data: Mapping[str, Any], settings: Mapping[str, Declared]) -> dict[str, Any]:
    """A config file's values, checked and converted like the flags; *settings* by name."""
    values: dict[str, Any] = {}
    base = os.path.dirname(os.path.abspath(path))
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        setting = settings.get(key)
        if setting is None:
            hint = difflib.get_close_matches(key, sorted(settings), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UsageError(f"config file {path!r}: unknown key {raw_key!r}{extra}")
        kind = setting.option.kind
        _check_type(path, raw_key, value, kind.toml)
        try:
            converted = kind.from_toml(value)
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise UsageError(f"config file {path!r}: {raw_key!r}: {error}") from None
        values[key] = kind.resolve(converted, base)
    return values
