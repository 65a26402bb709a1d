"""Compiled extension modules for the wheel (the rest of the metadata is in pyproject.toml).

The build backend (build_backend/smtpgate_build.py) sets ``SMTPGATE_COMPILE=1`` for a
wheel. Then the modules below are compiled with mypyc; if that cannot be done (no C
compiler, no Python headers) the wheel is pure Python, with a warning, unless
``SMTPGATE_REQUIRE_COMPILED=1`` makes it an error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The per-message path: the sans-I/O core and the connection layer around it. Left out on
# purpose: protocol/state.py (its PhaseError subclasses RuntimeError, which a compiled
# class cannot), errors.py (users subclass SMTPError; a compiled class refuses that unless
# marked, as stream.py's public classes are) and session.py (handlers add their own
# attributes to a Session).
COMPILED = [
    "protocol/addresses.py",
    "protocol/auth.py",
    "protocol/body.py",
    "protocol/buffer.py",
    "protocol/commands.py",
    "protocol/config.py",
    "protocol/core.py",
    "protocol/data.py",
    "protocol/ehlo.py",
    "protocol/events.py",
    "protocol/forwarding.py",
    "protocol/mail.py",
    "protocol/replies.py",
    "stream.py",
    "ondata.py",
    "outcome.py",
    "decisions.py",
    "connection.py",
    "smtpprotocol.py",
    "sockettransport.py",
    "opening.py",
    "registry.py",
    "readbuffer.py",
    "tlslayer.py",
    "sessiontask.py",
]
REQUIRED = os.environ.get("SMTPGATE_REQUIRE_COMPILED", "") not in ("", "0")


def _warn(message: str) -> None:
    if REQUIRED:
        raise SystemExit(f"smtpgate: {message} (and SMTPGATE_REQUIRE_COMPILED is set)")
    print(f"smtpgate: WARNING: {message}; building pure Python", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Builds the compiled modules, or none of them if the C compiler fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, no headers: the pure modules still work
            for extension in self.extensions:
                Path(self.get_ext_fullpath(extension.name)).unlink(missing_ok=True)
            _warn(f"could not compile ({error})")


def _extensions() -> list[Any]:
    if os.environ.get("SMTPGATE_COMPILE") != "1":
        return []
    try:
        from mypyc.build import mypycify

        return list(mypycify([f"src/smtpgate/{module}" for module in COMPILED], opt_level="3", group_name="smtpgate"))
    except (Exception, SystemExit) as error:  # mypy missing or refusing the sources
        _warn(f"mypyc did not run ({error!r})")
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
