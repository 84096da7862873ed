"""aiocomm._fallback.with_fallback: the one future a caller gets for a call
with a second chance (a stale locator cache entry, a balanced replica that
refused), on plain futures so each outcome is chosen by the test."""

from __future__ import annotations

import asyncio

import pytest

from aiocomm._fallback import with_fallback


class Refused(Exception):
    pass


async def test_mirrors_the_first_attempt() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()
    asked: list[BaseException] = []
    outer = with_fallback(loop, first, lambda e: asked.append(e))
    first.set_result(b"ok")
    assert await outer == b"ok" and asked == []


async def test_a_failure_without_a_second_chance_stands() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()
    outer = with_fallback(loop, first, lambda e: None)
    first.set_exception(Refused("no"))
    with pytest.raises(Refused):
        await outer


async def test_the_second_attempt_takes_over_once() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()
    seconds: list[asyncio.Future[bytes]] = []

    def again(error: BaseException) -> asyncio.Future[bytes]:
        assert isinstance(error, Refused)
        seconds.append(loop.create_future())
        return seconds[-1]

    outer = with_fallback(loop, first, again)
    first.set_exception(Refused("first"))
    await asyncio.sleep(0)
    assert len(seconds) == 1 and not outer.done()
    seconds[0].set_exception(Refused("second"))  # no third chance
    with pytest.raises(Refused, match="second"):
        await outer
    assert len(seconds) == 1


async def test_an_error_of_the_fallback_is_the_outcome() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()

    def broken(error: BaseException) -> asyncio.Future[bytes]:
        raise RuntimeError("cannot retry")

    outer = with_fallback(loop, first, broken)
    first.set_exception(Refused("first"))
    with pytest.raises(RuntimeError, match="cannot retry"):
        await outer


async def test_cancelling_cancels_the_attempt_under_way() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()
    outer = with_fallback(loop, first, lambda e: None)
    outer.cancel()
    await asyncio.sleep(0)
    assert first.cancelled()

    first = loop.create_future()
    second: asyncio.Future[bytes] = loop.create_future()
    outer = with_fallback(loop, first, lambda e: second)
    first.set_exception(Refused("first"))
    await asyncio.sleep(0)
    outer.cancel()
    await asyncio.sleep(0)
    assert second.cancelled()


async def test_a_cancelled_attempt_cancels_the_call() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bytes] = loop.create_future()
    outer = with_fallback(loop, first, lambda e: None)
    first.cancel()
    await asyncio.sleep(0)
    assert outer.cancelled()
