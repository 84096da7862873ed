"""The bare-yield path (issue 13): an `async def` servant that awaits
``asyncio.sleep(0)`` is stepped again by the loop one turn later, standing
in as its task; the native side counts it in flight (in the runtime's sets)
from its first suspension until it ends, and its reply leaves with the
batch the runtime ends. What must hold: arrival order across the yield,
the dispatch's context after it, errors and odd results after it answered
exactly once, and deactivate and destroy waiting for (or abandoning) a
dispatch that is between two yields.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aiocomm
from aiocomm._runtime import current_dispatch

LIMIT = 30.0  # seconds; for what must happen, far above its real time

tag: contextvars.ContextVar[str] = contextvars.ContextVar("yield_tag", default="unset")


class Yielder:
    def __init__(self) -> None:
        self.before: list[str] = []
        self.after: list[str] = []
        self.spins = 0
        self.stop = False
        self.ended: list[str] = []

    async def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0)
        return payload

    async def record(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.before.append(payload.decode())
        await asyncio.sleep(0)
        self.after.append(payload.decode())
        await asyncio.sleep(0)
        return payload

    async def context(self, payload: bytes, current: aiocomm.Current) -> bytes:
        first = asyncio.current_task()
        tag.set(payload.decode())
        await asyncio.sleep(0)
        seen = (tag.get(), current_dispatch.get() is current, asyncio.current_task() is first)
        return repr(seen).encode()

    async def turns(self, payload: bytes, current: aiocomm.Current) -> bytes:
        # A callback scheduled before the yield runs in the next turn and
        # schedules a second one for the turn after: the servant, resumed one
        # turn later, sees the first and not the second (as a Task would).
        loop = asyncio.get_running_loop()
        seen: list[int] = []

        def first() -> None:
            seen.append(1)
            loop.call_soon(seen.append, 2)

        loop.call_soon(first)
        await asyncio.sleep(0)
        return bytes(seen)

    async def fail_after_yield(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0)
        raise ValueError("after the yield")

    async def wrong_type_after_yield(self, payload: bytes, current: aiocomm.Current) -> Any:
        await asyncio.sleep(0)
        return 12

    async def bytearray_after_yield(self, payload: bytes, current: aiocomm.Current) -> Any:
        await asyncio.sleep(0)
        return bytearray(payload)

    async def spin(self, payload: bytes, current: aiocomm.Current) -> bytes:
        # Bare yields only (never a future) until told to stop.
        try:
            while not self.stop:
                self.spins += 1
                await asyncio.sleep(0)
            return b"stopped"
        finally:
            self.ended.append(payload.decode())


@pytest.fixture
async def server() -> AsyncIterator[aiocomm.Communicator]:
    communicator = aiocomm.Communicator(close_timeout=LIMIT)
    try:
        yield communicator
    finally:
        await asyncio.wait_for(communicator.destroy(), LIMIT)


@pytest.fixture
async def client() -> AsyncIterator[aiocomm.Communicator]:
    communicator = aiocomm.Communicator(invocation_timeout=LIMIT)
    try:
        yield communicator
    finally:
        await communicator.destroy()


def serve(server: aiocomm.Communicator, client: aiocomm.Communicator,
          servant: object) -> tuple[aiocomm.ObjectAdapter, aiocomm.Proxy]:
    adapter = server.create_object_adapter()
    adapter.add(servant, "y")
    adapter.activate()
    return adapter, client.proxy(f"y:{adapter.endpoints[0]}")


async def until(condition: Any) -> None:
    for _ in range(int(LIMIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_one_yield_at_a_time_is_answered_and_leaves_nothing_in_flight(
        server: aiocomm.Communicator, client: aiocomm.Communicator) -> None:
    # One at a time: each reply leaves with a batch the runtime ends (no
    # other traffic to flush it), and each dispatch is counted out.
    _, proxy = serve(server, client, Yielder())
    for i in range(50):
        payload = b"%d" % i
        assert await asyncio.wait_for(proxy.invoke("echo", payload), LIMIT) == payload
    assert server.stats()["python_dispatches_in_flight"] == 0


async def test_a_bare_yield_costs_exactly_one_loop_turn(
        server: aiocomm.Communicator, client: aiocomm.Communicator) -> None:
    _, proxy = serve(server, client, Yielder())
    for _ in range(20):
        assert await asyncio.wait_for(proxy.invoke("turns"), LIMIT) == b"\x01"


async def test_arrival_order_is_kept_across_yields(server: aiocomm.Communicator,
                                                  client: aiocomm.Communicator) -> None:
    servant = Yielder()
    _, proxy = serve(server, client, servant)
    names = [str(i) for i in range(100)]
    replies = await asyncio.wait_for(
        asyncio.gather(*[proxy.invoke("record", n.encode()) for n in names]), LIMIT)
    assert replies == [n.encode() for n in names]
    assert servant.before == names
    assert servant.after == names
    assert server.stats()["python_dispatches_in_flight"] == 0


async def test_the_dispatch_context_survives_a_yield(server: aiocomm.Communicator,
                                                     client: aiocomm.Communicator) -> None:
    _, proxy = serve(server, client, Yielder())
    names = ["a", "b", "c", "d"]
    replies = await asyncio.wait_for(
        asyncio.gather(*[proxy.invoke("context", n.encode()) for n in names]), LIMIT)
    assert replies == [repr((n, True, True)).encode() for n in names]
    assert tag.get() == "unset"  # nothing leaked into the loop's context


@pytest.mark.parametrize(("operation", "text"), [
    ("fail_after_yield", "ValueError: after the yield"),
    ("wrong_type_after_yield", "returned int"),
])
async def test_errors_after_a_yield_are_answered_once(server: aiocomm.Communicator,
                                                      client: aiocomm.Communicator,
                                                      operation: str, text: str) -> None:
    _, proxy = serve(server, client, Yielder())
    for _ in range(3):
        with pytest.raises(aiocomm.UnknownError, match=text):
            await asyncio.wait_for(proxy.invoke(operation, b""), LIMIT)
    # The connection is still in step: the next reply is the next request's.
    assert await asyncio.wait_for(proxy.invoke("echo", b"next"), LIMIT) == b"next"
    assert server.stats()["python_dispatches_in_flight"] == 0


async def test_a_bytes_like_result_after_a_yield_is_replied(server: aiocomm.Communicator,
                                                            client: aiocomm.Communicator) -> None:
    _, proxy = serve(server, client, Yielder())
    assert await asyncio.wait_for(proxy.invoke("bytearray_after_yield", b"ba"), LIMIT) == b"ba"
    assert server.stats()["python_dispatches_in_flight"] == 0


async def test_deactivate_waits_for_a_dispatch_between_yields(server: aiocomm.Communicator,
                                                              client: aiocomm.Communicator) -> None:
    servant = Yielder()
    adapter, proxy = serve(server, client, servant)
    call = asyncio.ensure_future(proxy.invoke("spin", b"s"))
    await until(lambda: servant.spins > 10)
    assert server.stats()["python_dispatches_in_flight"] == 1
    idle = adapter.deactivate()
    spins = servant.spins
    await until(lambda: servant.spins > spins + 10)  # still yielding, still waited for
    assert not idle.done()
    servant.stop = True
    assert await asyncio.wait_for(call, LIMIT) == b"stopped"
    await asyncio.wait_for(idle, LIMIT)
    assert server.stats()["python_dispatches_in_flight"] == 0


async def test_destroy_abandons_a_dispatch_between_yields(client: aiocomm.Communicator) -> None:
    # Past close_timeout the dispatch is abandoned: its caller learns the
    # connection is lost, and when the servant ends later nothing is sent
    # or counted twice (any loop error fails the test).
    server = aiocomm.Communicator(close_timeout=0.1)
    servant = Yielder()
    try:
        _, proxy = serve(server, client, servant)
        call = asyncio.ensure_future(proxy.invoke("spin", b"s"))
        await until(lambda: servant.spins > 10)
        await asyncio.wait_for(server.destroy(), LIMIT)
        with pytest.raises(aiocomm.ConnectionLostError):
            await asyncio.wait_for(call, LIMIT)
        assert server.stats()["python_dispatches_in_flight"] == 0
        spins = servant.spins
        await until(lambda: servant.spins > spins + 10)  # the servant itself goes on
        servant.stop = True
        await until(lambda: servant.ended == ["s"])
        assert server.stats()["python_dispatches_in_flight"] == 0
    finally:
        servant.stop = True
        await asyncio.wait_for(server.destroy(), LIMIT)
