"""Helpers every test folder shares: waiting, recording across threads, log lines, free
ports, and the first steps of an SMTP dialogue on a RawClient.

Importable as ``support`` (the tests folder is on ``sys.path``); folder helpers
(``server_support``, ``proxy_support``...) re-export what they use from here.
"""

from .dialogue import ehlo_lines, greet, starttls, upgrade
from .logs import smtpgate_messages, wait_for_log
from .net import free_port, port_accepts
from .waiting import Recorder, wait_until

__all__ = [
    "Recorder",
    "wait_until",
    "wait_for_log",
    "smtpgate_messages",
    "free_port",
    "port_accepts",
    "greet",
    "starttls",
    "upgrade",
    "ehlo_lines",
]
