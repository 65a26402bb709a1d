"""Whether this install runs compiled, and the one hint the compiler needs.

A wheel built from source compiles the hot modules (the protocol core and the connection
layer, listed in ``setup.py``) with mypyc when a C compiler is at hand; an editable
install, ``SMTPGATE_PURE=1`` or a failed compile gives the same package in pure Python.
Both behave the same; the compiled one spends less CPU per message (bench/RESULTS.md).
"""

from __future__ import annotations

import importlib.machinery
from collections.abc import Callable
from typing import TypeVar

__all__ = ["is_compiled", "mypyc_attr"]

_T = TypeVar("_T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # not installed (it comes with mypy): only the compiler reads the hint

    def mypyc_attr(*attrs: str, **kwattrs: object) -> Callable[[_T], _T]:
        """Stand-in for ``mypy_extensions.mypyc_attr``: returns the class unchanged."""
        return lambda cls: cls


def is_compiled() -> bool:
    """True when the protocol core was loaded as a compiled extension module."""
    from .protocol import core

    origin = getattr(core, "__file__", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
