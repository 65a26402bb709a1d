"""smtpgate's build backend: setuptools, plus a mypyc compile of the hot modules.

A wheel (``pip install .``, ``pip wheel .``, ``python -m build``) asks for mypy so that
``setup.py`` can compile; an editable install never compiles, so that an edit to a module
always counts. ``SMTPGATE_PURE=1`` (or ``--config-settings pure=1``) builds pure Python.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the rest of the PEP 517/660 hooks)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

COMPILER = "mypy>=1.11"  # mypyc comes with mypy


def _compile_wanted(config_settings: dict[str, Any] | None) -> bool:
    if os.environ.get("SMTPGATE_PURE", "") not in ("", "0"):
        return False
    return str((config_settings or {}).get("pure", "0")) in ("", "0")


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires = list(_setuptools.get_requires_for_build_wheel(config_settings))
    if _compile_wanted(config_settings):
        requires.append(COMPILER)
    return requires


def build_wheel(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    os.environ["SMTPGATE_COMPILE"] = "1" if _compile_wanted(config_settings) else "0"
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    os.environ["SMTPGATE_COMPILE"] = "0"
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
