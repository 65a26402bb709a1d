"""The phase table: its rules hold, and the core moves only along it."""

from __future__ import annotations

import pytest
from core_support import CoreClient

from smtpgate.protocol.state import TRANSITIONS, Phase, PhaseError, Trigger, step


def test_every_phase_is_reachable_from_the_greeting():
    seen = {Phase.GREETING}
    frontier = [Phase.GREETING]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(Phase)


def test_every_phase_may_close_and_nothing_leaves_closed():
    for phase in Phase:
        assert step(phase, Trigger.CLOSE) is Phase.CLOSED
    assert set(TRANSITIONS[Phase.CLOSED].values()) == {Phase.CLOSED}


def test_a_move_outside_the_table_raises():
    with pytest.raises(PhaseError, match="BODY_STARTED is not allowed in COMMAND"):
        step(Phase.COMMAND, Trigger.BODY_STARTED)


def test_the_core_walks_the_table_through_a_session():
    client = CoreClient(chunking=True)
    core = client.core
    assert core.phase is Phase.COMMAND
    client.send("EHLO client.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    core.receive_data(b"DATA\r\n")
    assert core.next_event() is not None and core.phase is Phase.AWAITING
    core.accept()
    assert core.phase is Phase.DATA
    client.send("body\r\n.\r\n")
    assert core.phase is Phase.COMMAND
    core.receive_data(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    client.pump()
    core.receive_data(b"BDAT 10 LAST\r\n01234")
    core.next_event()
    core.accept()
    assert core.phase is Phase.BDAT
    client.send("56789")
    assert core.phase is Phase.COMMAND
    client.send("QUIT\r\n")
    assert core.phase is Phase.CLOSED


def test_a_driver_deciding_nothing_is_refused():
    client = CoreClient()
    with pytest.raises(RuntimeError, match="no event is waiting"):
        client.core.accept()


def test_the_core_imports_no_io():
    """The protocol package and what it imports from smtpgate use no asyncio, ssl or socket."""
    import ast
    from pathlib import Path

    import smtpgate.protocol

    package = Path(smtpgate.protocol.__file__).parent
    files = [*package.glob("*.py"), *(package.parent / name for name in ("errors.py", "session.py", "sasl.py"))]
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 or node.module in ("errors", "session", "sasl"), (path.name, node.module)
                continue
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in ("asyncio", "ssl", "socket"), f"{path.name} imports {name}"
