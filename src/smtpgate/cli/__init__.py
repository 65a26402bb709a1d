"""The ``smtpgate`` command: receive mail and store it (see ``docs/cli.md``).

``smtpgate [options]`` serves; ``smtpgate hash-password [USER]`` prints a password hash
for ``--auth-file``; ``smtpgate queue ...`` looks at the delivery queue. Start-up
problems print one line on stderr and exit non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from .app import App, StartupError, new_event_loop
from .config import Settings, UsageError, parse_settings
from .logs import StartupHandler, setup_logging
from .passwords import hash_password_command
from .workers import Supervisor, check_addresses

__all__ = ["main"]

logger = logging.getLogger("smtpgate.cli")


def _hash_password(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: smtpgate hash-password [USER]\n\nRead a password (prompted, or one line of stdin) and print")
        print("its scrypt hash; with USER, print 'USER:hash', a line for --auth-file.")
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("smtpgate: error: usage: smtpgate hash-password [USER]", file=sys.stderr)
        return 2
    return hash_password_command(argv[0] if argv else None)


def _describe(app: App, loop_name: str) -> str:
    s = app.settings
    bound = app.server.addresses if app.server.listening else s.addresses()  # real ports after --port 0
    where = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in bound)
    tls = "implicit TLS" if s.implicit_tls else ("STARTTLS required" if s.require_tls else "STARTTLS")
    cert = s.tls_cert or "generated certificate"
    auth = "no AUTH" if s.auth_file is None else ("AUTH optional" if s.auth_optional else "AUTH required")
    proto = "LMTP" if s.lmtp else "SMTP"
    checks = {None: "", "header": "; verifying senders", "enforce": "; verifying senders (enforced)"}[s.verify]
    if s.dnsbl:
        checks += f"; {len(s.dnsbl)} DNS blocklist{'s' if len(s.dnsbl) > 1 else ''}"
    line = (
        f"smtpgate {proto} on {where} ({tls}, {cert}; {auth}{checks}) storing to {app.describe_sinks()} [{loop_name}]"
    )
    if app.http is not None:
        line += f"; inbox UI and API on {app.http.url}/"
    return line


def _serve_one(app: App, startup: StartupHandler) -> int:
    loop, loop_name = new_event_loop(app.settings.uvloop)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(app.start())
        startup.start_output()
        logger.info("%s; Ctrl-C to stop", _describe(app, loop_name))
        try:
            loop.run_until_complete(app.run())
        except asyncio.CancelledError:
            return 1
        logger.info("stopped")
        return 0
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


def _serve(settings: Settings, startup: StartupHandler) -> int:
    app = App(settings)
    if settings.workers == 1:
        return _serve_one(app, startup)
    settings.listen = check_addresses(settings.addresses())
    startup.start_output()
    _, loop_name = new_event_loop(settings.uvloop)
    logger.info("%s; %d workers", _describe(app, loop_name), settings.workers)
    return Supervisor(app, settings.workers).run()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``smtpgate`` console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] == "hash-password":
        return _hash_password(args[1:])
    if args and args[0] == "deliver":
        from .consume import deliver_command

        return deliver_command(args[1:])
    if args and args[0] == "queue":
        from .queuecmd import queue_command

        return queue_command(args[1:])
    startup: StartupHandler | None = None
    try:
        settings = parse_settings(args)
        startup = setup_logging(settings.log_format, settings.log_level)
        return _serve(settings, startup)
    except UsageError as error:
        print(f"smtpgate: error: {error}", file=sys.stderr)
        return 2
    except StartupError as error:
        if startup is not None:
            startup.discard()
        print(f"smtpgate: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
