"""`await destroy()`, `adapter.deactivate()` and `adapter.destroy()` always end.

Requests that reach an adapter that is not active once destroy has begun are
refused (ObjectNotExistError, as Ice refuses them), never held for a
dispatch that will not come; and the wait for dispatches in flight is bounded
by ``close_timeout``: past it the operations still running are logged, their
replies abandoned and their connections aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

import aiocomm

# Far above what a correct destroy takes (milliseconds) and far below a
# close_timeout that would hide a leak (LONG_CLOSE): a destroy that ends only
# by abandoning its dispatches fails these tests.
DESTROY_LIMIT = 30.0
LONG_CLOSE = 120.0
# The close_timeout of the tests that run into it on purpose.
SHORT_CLOSE = 0.5


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


class Stuck:
    """Dispatches that do not end until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.finished = 0

    async def hang(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.started += 1
        await self.release.wait()
        self.finished += 1
        return b"late"


async def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def _block_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Waits with the loop blocked, so the inbox is not drained meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


async def test_destroy_refuses_requests_held_and_still_in_the_inbox() -> None:
    server = aiocomm.Communicator(close_timeout=LONG_CLOSE)
    client = aiocomm.Communicator(invocation_timeout=DESTROY_LIMIT * 2)
    try:
        adapter = server.create_object_adapter()
        adapter.add(Echo(), "echo")  # never activated: requests are held
        prx = client.proxy(f"echo:{adapter.endpoints[0]}")
        held = [asyncio.ensure_future(prx.invoke("echo", b"held")) for _ in range(50)]
        await _until(lambda: server.stats()["dispatches_in_flight"] >= 50)
        queued = [asyncio.ensure_future(prx.invoke("echo", b"queued")) for _ in range(50)]
        await asyncio.sleep(0)  # the client's batch leaves
        # The server's loop is blocked here: the second 50 wait in its inbox
        # when destroy begins, and are drained (and must be refused) after.
        _block_until(lambda: server.stats()["dispatches_in_flight"] >= 100)
        destroy = asyncio.ensure_future(server.destroy())
        await asyncio.wait_for(destroy, DESTROY_LIMIT)
        assert server.is_destroyed
        results = await asyncio.gather(*held, *queued, return_exceptions=True)
        assert all(isinstance(r, aiocomm.ObjectNotExistError) for r in results), {
            type(r).__name__ for r in results}
        assert server.stats()["dispatches_in_flight"] == 0
    finally:
        await client.destroy()
        await asyncio.wait_for(server.destroy(), DESTROY_LIMIT)


class Dynamic:
    """A default servant whose __getattr__ raises KeyError (a forwarding one)."""

    routes: dict[str, object] = {}

    def __getattr__(self, name: str) -> object:
        return self.routes[name]


async def test_destroy_after_a_servant_lookup_that_raises() -> None:
    server = aiocomm.Communicator(close_timeout=LONG_CLOSE)
    client = aiocomm.Communicator(invocation_timeout=DESTROY_LIMIT)
    try:
        adapter = server.create_object_adapter()
        adapter.add_default_servant(Dynamic())
        adapter.activate()
        prx = client.proxy(f"anything:{adapter.endpoints[0]}")
        with pytest.raises(aiocomm.UnknownError, match="KeyError"):
            await prx.invoke("op", b"")
        assert server.stats()["dispatches_in_flight"] == 0
        await asyncio.wait_for(server.destroy(), DESTROY_LIMIT)
        assert server.is_destroyed
    finally:
        await client.destroy()
        await asyncio.wait_for(server.destroy(), DESTROY_LIMIT)


@contextlib.asynccontextmanager
async def _stuck_call(close_timeout: float) -> AsyncIterator[
        tuple[aiocomm.Communicator, aiocomm.ObjectAdapter, Stuck, asyncio.Future[bytes]]]:
    """A server whose one dispatch (`hang`) is under way, and its call."""
    server = aiocomm.Communicator(close_timeout=close_timeout)
    client = aiocomm.Communicator(invocation_timeout=DESTROY_LIMIT)
    stuck = Stuck()
    try:
        adapter = server.create_object_adapter()
        adapter.add(stuck, "stuck")
        adapter.activate()
        prx = client.proxy(f"stuck:{adapter.endpoints[0]}")
        call = asyncio.ensure_future(prx.invoke("hang", b""))
        await _until(lambda: stuck.started == 1)
        yield server, adapter, stuck, call
    finally:
        stuck.release.set()
        await client.destroy()
        await asyncio.wait_for(server.destroy(), DESTROY_LIMIT)


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiocomm"]


async def test_destroy_abandons_dispatches_past_close_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    async with _stuck_call(SHORT_CLOSE) as (server, _adapter, stuck, call):
        with caplog.at_level(logging.WARNING, logger="aiocomm"):
            await asyncio.wait_for(server.destroy(), DESTROY_LIMIT)
        assert server.is_destroyed
        # The caller learns the connection is gone, rather than waiting.
        with pytest.raises(aiocomm.ConnectionLostError):
            await asyncio.wait_for(call, DESTROY_LIMIT)
        messages = _messages(caplog)
        assert any("close_timeout" in m for m in messages), messages
        assert any("'hang'" in m and "stuck" in m for m in messages), messages
        # The servant may still finish: its reply goes nowhere, quietly.
        stuck.release.set()
        await _until(lambda: stuck.finished == 1)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("verb", ["deactivate", "destroy"])
async def test_adapter_wait_is_bounded_by_close_timeout(
        verb: str, caplog: pytest.LogCaptureFixture) -> None:
    async with _stuck_call(SHORT_CLOSE) as (server, adapter, stuck, call):
        with caplog.at_level(logging.WARNING, logger="aiocomm"):
            await asyncio.wait_for(getattr(adapter, verb)(), DESTROY_LIMIT)
        with pytest.raises(aiocomm.ConnectionLostError):
            await asyncio.wait_for(call, DESTROY_LIMIT)
        messages = _messages(caplog)
        assert any("'hang'" in m and "stuck" in m for m in messages), messages
        assert server.stats()["python_dispatches_in_flight"] == 0
        await _until(lambda: server.stats()["dispatches_in_flight"] == 0)
        stuck.release.set()
        await _until(lambda: stuck.finished == 1)
        # Nothing is left for destroy to wait for.
        await asyncio.wait_for(server.destroy(), DESTROY_LIMIT)


async def test_adapter_deactivate_waits_for_dispatches_that_end_in_time() -> None:
    async with _stuck_call(LONG_CLOSE) as (_server, adapter, stuck, call):
        deactivated = adapter.deactivate()
        await asyncio.sleep(0.1)
        assert not deactivated.done()
        stuck.release.set()
        await asyncio.wait_for(deactivated, DESTROY_LIMIT)
        assert await asyncio.wait_for(call, DESTROY_LIMIT) == b"late"
