"""DataStream's end, as a handler sees it: ``async for`` stops, ``anext`` raises
StopAsyncIteration (every time), ``read`` returns what is left, and an aborted stream raises
its error instead of ending quietly. The end is handed out by ``streamend`` (an awaitable
raised from C, not from compiled code); these hold the behaviour to what it was."""

from __future__ import annotations

import asyncio

import pytest

from smtpgate.stream import DataStream, DataStreamError


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def ended_stream(*chunks: bytes) -> DataStream:
    stream = DataStream()
    for chunk in chunks:
        stream.feed(chunk)
    stream.finish()
    return stream


def test_async_for_yields_every_chunk_then_stops():
    async def main() -> list[bytes]:
        return [chunk async for chunk in ended_stream(b"a", b"b", b"c")]

    assert run(main()) == [b"a", b"b", b"c"]


def test_anext_at_the_end_raises_stop_async_iteration_every_time():
    async def main() -> int:
        stream = ended_stream(b"x")
        assert await anext(stream) == b"x"
        raised = 0
        for _ in range(3):
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
            raised += 1
        assert await anext(stream, b"default") == b"default"
        return raised

    assert run(main()) == 3


def test_an_empty_stream_ends_at_once():
    async def main() -> tuple[list[bytes], bytes]:
        stream = ended_stream()
        return [chunk async for chunk in stream], await stream.read()

    assert run(main()) == ([], b"")


def test_read_in_pieces_up_to_the_end():
    async def main() -> list[bytes]:
        stream = ended_stream(b"hello ", b"world")
        return [await stream.read(4), await stream.read(4), await stream.read(100), await stream.read(4)]

    assert run(main()) == [b"hell", b"o wo", b"rld", b""]


def test_the_end_arriving_while_a_reader_waits():
    async def main() -> tuple[list[bytes], bytes]:
        stream, other = DataStream(), DataStream()

        async def later() -> None:
            await asyncio.sleep(0.01)
            stream.feed(b"one")
            other.feed(b"two")
            await asyncio.sleep(0.01)
            stream.finish()
            other.finish()

        feeder = asyncio.ensure_future(later())
        chunks = [chunk async for chunk in stream]
        whole = await other.read()
        await feeder
        return chunks, whole

    assert run(main()) == ([b"one"], b"two")


def test_an_aborted_stream_raises_its_error_not_the_end():
    async def main() -> None:
        stream = DataStream()
        stream.feed(b"part")
        stream.abort(DataStreamError("client gone"))
        with pytest.raises(DataStreamError, match="client gone"):
            async for _ in stream:
                pass
        with pytest.raises(DataStreamError):
            await stream.read()
        with pytest.raises(DataStreamError):
            await anext(stream)

    run(main())


def test_the_end_awaitable_works_on_a_second_loop_and_thread():
    import threading

    results: list[list[bytes]] = []

    def worker() -> None:
        async def main() -> list[bytes]:
            return [chunk async for chunk in ended_stream(b"t")]

        results.append(asyncio.run(main()))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [[b"t"]] * 3
