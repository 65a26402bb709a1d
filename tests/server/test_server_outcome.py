"""outcome_of: the one translation of a handler's result (pure asyncio, no server)."""

from __future__ import annotations

import asyncio

import pytest

from smtpgate import DataStream, DataStreamError, MessageTooLarge, SMTPError
from smtpgate.lifecycle import Waiting
from smtpgate.outcome import HANDLER_TIMEOUT, INTERNAL_ERROR, Outcome, outcome_of
from smtpgate.registry import ConnectionRegistry


def settle(call, *, timeout=None, stream=None) -> tuple[Outcome, list[bool]]:
    waits: list[bool] = []

    async def main() -> Outcome:
        wait_on = lambda kind: waits.append(kind is Waiting.HANDLER)  # noqa: E731
        return await outcome_of(call, timeout=timeout, wait_on=wait_on, stream=stream)

    return asyncio.run(main()), waits


async def later(value):
    await asyncio.sleep(0)
    return value


def test_a_plain_return_is_accepted_without_waiting():
    outcome, waits = settle(lambda: "text")
    assert (outcome.value, outcome.error, outcome.failed, waits) == ("text", None, False, [])


def test_an_awaited_return_is_accepted_and_waited_for():
    outcome, waits = settle(lambda: later("queued"))
    assert (outcome.value, outcome.error, waits) == ("queued", None, [True, False])


@pytest.mark.parametrize("how", ["raised", "returned"])
def test_an_smtp_error_refuses(how):
    error = SMTPError(550, "No such user")

    def call():
        if how == "raised":
            raise error
        return error

    outcome, _ = settle(call)
    assert outcome.error is error and not outcome.failed


def test_a_timeout_is_a_451_and_a_failure():
    outcome, waits = settle(lambda: asyncio.sleep(5), timeout=0.01)
    assert (outcome.error, outcome.timed_out, outcome.failed, waits) == (HANDLER_TIMEOUT, True, True, [True, False])


def test_another_exception_is_a_451_and_a_failure():
    problem = KeyError("bug")

    def call():
        raise problem

    outcome, _ = settle(call)
    assert (outcome.error, outcome.failure, outcome.failed) == (INTERNAL_ERROR, problem, True)


def test_the_streams_own_refusal_is_not_a_failure():
    stream = DataStream(1, refuse_oversized=True)
    stream.feed(b"xy")

    async def read():
        return await stream.read()

    outcome, _ = settle(read, stream=stream)
    assert isinstance(outcome.body_refused, MessageTooLarge) and outcome.error is None and not outcome.failed

    def other():
        raise DataStreamError("not the stream's")

    outcome, _ = settle(other, stream=stream)
    assert (outcome.error, outcome.body_refused) == (INTERNAL_ERROR, None)


def test_cancellation_goes_through():
    async def main() -> None:
        task = asyncio.ensure_future(outcome_of(lambda: asyncio.sleep(5), timeout=None, wait_on=lambda kind: None))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_registry_counts_live_connections_and_waits_for_the_last_to_go():
    async def main() -> None:
        registry: ConnectionRegistry[str] = ConnectionRegistry()
        registry.add("a")
        registry.add("b")
        registry.session_over("a")  # its on_close still runs
        assert (len(registry), list(registry), sorted(registry.everyone())) == (1, ["b"], ["a", "b"])
        assert await registry.wait_empty(0.01) is False
        asyncio.get_running_loop().call_later(0.01, registry.remove, "a")
        asyncio.get_running_loop().call_later(0.02, registry.remove, "b")
        assert await registry.wait_empty(5) is True
        assert not registry and registry.everyone() == []

    asyncio.run(main())
