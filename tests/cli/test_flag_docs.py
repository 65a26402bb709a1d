"""docs/cli.md's flag tables and ``smtpgate --help`` agree with the declared settings."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from smtpgate.cli.config import CONFIG, build_parser, parse_settings
from smtpgate.cli.options import Switch, declared
from smtpgate.cli.settings import GROUPS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
# Guides with their own table of some of the command's flags (Flag | Default | Meaning).
GUIDES = ("delivery.md", "verify.md")


def _flag_rows() -> dict[str, tuple[str | None, str, str]]:
    """Each flag of the Flags section: (its ### heading, the flag cell, the default cell)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("\n## Flags\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str | None, str, str]] = {}
    heading = None
    for line in section.splitlines():
        if line.startswith("### "):
            heading = line[4:].strip()
        elif line.startswith("| `--"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            flag = re.match(r"`(--[a-z0-9-]+)", cells[0])
            assert flag is not None, line
            assert flag.group(1) not in rows, f"{flag.group(1)} is in the tables twice"
            rows[flag.group(1)] = (heading, cells[0], cells[1])
    return rows


def _actions() -> dict[str, argparse.Action]:
    return {
        action.option_strings[0]: action
        for action in build_parser()._actions
        if action.option_strings and action.option_strings[0] != "-h"
    }


def test_every_flag_is_in_the_docs_and_nothing_else():
    assert set(_flag_rows()) == set(_actions())


@pytest.mark.parametrize("group", GROUPS, ids=lambda group: group.title)
def test_docs_state_each_flags_group_and_default(group):
    rows = _flag_rows()
    for setting in declared(group):
        if setting.option.flag is None:
            continue
        heading, _, default = rows[setting.option.flag]
        assert (heading or "").lower() == group.title.lower(), setting.option.flag
        assert default == setting.default_text, setting.option.flag


def test_docs_state_the_default_of_config():
    heading, _, default = _flag_rows()["--config"]
    assert heading is None
    assert default == CONFIG.default_text(None)


def test_docs_show_each_flags_metavar():
    rows = _flag_rows()
    for flag, action in _actions().items():
        if action.metavar is not None:
            assert rows[flag][1].startswith(f"`{flag} ") and action.metavar in rows[flag][1], flag


def test_help_states_each_default_once_in_its_group():
    parser = build_parser()
    titles = [group.title for group in parser._action_groups]
    assert titles[2:] == [group.title for group in GROUPS]
    for group in GROUPS:
        for setting in declared(group):
            if setting.option.flag is None:
                continue
            action = _actions()[setting.option.flag]
            assert action.help is not None
            assert action.help.count("default") <= 1, action.help
            text = setting.default_text.replace("`", "")
            stated = text not in ("none", "off") and not isinstance(setting.option.kind, Switch)
            assert action.help.endswith(f"; default: {text}") == stated, action.help


def test_relative_paths_are_the_file_and_dir_flags():
    """The docs say: keys whose flag takes a FILE or a DIR are relative to the config file."""
    for group in GROUPS:
        for setting in declared(group):
            metavar = setting.option.metavar or setting.option.kind.metavar
            assert setting.option.kind.relative == (metavar in ("FILE", "DIR")), setting.name


@pytest.mark.parametrize("page", GUIDES)
def test_guides_state_the_same_defaults(page):
    """A guide may say more after the default (``the system's resolvers (/etc/resolv.conf)``)."""
    defaults = {setting.option.flag: setting.default_text for group in GROUPS for setting in declared(group)}
    rows = 0
    for line in (DOCS.parent / page).read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        flag = re.match(r"`(--[a-z0-9-]+)", cells[0]) if cells else None
        if flag is not None and flag.group(1) in defaults:
            assert cells[1].startswith(defaults[flag.group(1)]), (page, line)
            rows += 1
    assert rows > 0


def test_the_config_file_example_is_valid(tmp_path):
    """The example of docs/cli.md's config file section parses, each key known and well typed."""
    section = DOCS.read_text(encoding="utf-8").split("\n## Config file\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "smtpgate.toml").write_text(example, encoding="utf-8")
    settings = parse_settings(["--config", str(tmp_path / "smtpgate.toml")])
    assert settings.listen and settings.server
