"""The phases of an SMTP session and every allowed move between them, as data.

The rules, in one place:

* A session starts in GREETING. Client bytes before the greeting close it (early talker).
* COMMAND reads command lines. A command the core answers by itself stays in COMMAND; a
  command that needs the driver's decision (MAIL, RCPT, DATA, the end of a message, a
  finished AUTH, STARTTLS, XCLIENT) moves to AWAITING until ``accept()``/``reject()``.
* From AWAITING a decision goes back to COMMAND, except: an accepted DATA goes to DATA
  (the body up to ``CRLF.CRLF``); an accepted first BDAT goes to BDAT (exactly the
  chunk's bytes); an accepted STARTTLS goes to TLS (input dropped until the handshake);
  a refused XOAUTH2 attempt goes to AUTH (the client acknowledges the error).
* DATA and BDAT end in AWAITING (the end of the message waits for its verdict), or, for a
  BDAT chunk that is not the last or was refused, straight back to COMMAND.
* AUTH reads SASL response lines: a challenge keeps the exchange in AUTH; credentials go to
  AWAITING; a cancelled or malformed response back to COMMAND.
* TLS goes back to COMMAND once the handshake is done (the session starts over, RFC 3207).
* Every phase may go to CLOSED (QUIT, a 421, the client gone, a timeout); nothing leaves it.

`Phase` and `Trigger` are small integers so that the table is one dict lookup per move.
"""

from __future__ import annotations

import enum

__all__ = ["Phase", "Trigger", "TRANSITIONS", "STEP", "PhaseError", "step"]


class Phase(enum.IntEnum):
    """Where a session is."""

    GREETING = 0
    COMMAND = 1
    AWAITING = 2
    DATA = 3
    BDAT = 4
    AUTH = 5
    TLS = 6
    CLOSED = 7


class Trigger(enum.IntEnum):
    """What happened."""

    GREET = 0  # the 220 greeting was sent
    DECISION_NEEDED = 1  # an event waits for accept()/reject()
    DECIDED = 2  # accept()/reject() answered it
    BODY_STARTED = 3  # DATA accepted: 354 sent
    CHUNK_STARTED = 4  # a BDAT chunk's bytes follow (accepted, in a transaction, or refused)
    CHUNK_DONE = 5  # a BDAT chunk that is not the last (or was refused) was read
    CHALLENGE = 6  # a SASL challenge (334) was sent
    SASL_ENDED = 7  # the exchange ended without credentials (cancelled, malformed, too long)
    TLS_ACCEPTED = 8  # 220 Ready to start TLS was sent
    TLS_DONE = 9  # the handshake finished
    CLOSE = 10  # the session ends


_P, _T = Phase, Trigger

TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    _P.GREETING: {_T.GREET: _P.COMMAND},
    _P.COMMAND: {
        _T.DECISION_NEEDED: _P.AWAITING,
        _T.CHUNK_STARTED: _P.BDAT,
        _T.CHALLENGE: _P.AUTH,
    },
    _P.AWAITING: {
        _T.DECIDED: _P.COMMAND,
        _T.BODY_STARTED: _P.DATA,
        _T.CHUNK_STARTED: _P.BDAT,
        _T.CHALLENGE: _P.AUTH,
        _T.TLS_ACCEPTED: _P.TLS,
    },
    _P.DATA: {_T.DECISION_NEEDED: _P.AWAITING},
    _P.BDAT: {_T.DECISION_NEEDED: _P.AWAITING, _T.CHUNK_DONE: _P.COMMAND},
    _P.AUTH: {_T.DECISION_NEEDED: _P.AWAITING, _T.CHALLENGE: _P.AUTH, _T.SASL_ENDED: _P.COMMAND},
    _P.TLS: {_T.TLS_DONE: _P.COMMAND},
    _P.CLOSED: {},  # nothing leaves it
}
for _moves in TRANSITIONS.values():
    _moves[_T.CLOSE] = _P.CLOSED  # from anywhere; closing a closed session changes nothing

# The table flattened for the core's hot path: ``STEP[phase << 4 | trigger]`` is the next phase.
STEP: dict[int, Phase] = {
    phase << 4 | trigger: target for phase, moves in TRANSITIONS.items() for trigger, target in moves.items()
}


class PhaseError(RuntimeError):
    """A move the table does not allow: a bug in the core (or its driver)."""


def step(phase: Phase, trigger: Trigger) -> Phase:
    """The phase after ``trigger`` in ``phase``; `PhaseError` if the table has no such move."""
    try:
        return STEP[phase << 4 | trigger]
    except KeyError:
        raise PhaseError(f"{trigger.name} is not allowed in {phase.name}") from None
