"""`async def` servants on the native dispatch path: the drain runs a
coroutine's first step itself, in a context of its own. One that ends there
is answered at once, with no task; one that suspends continues as a task
from where it stopped. Semantics are a task's: the dispatch's Current and
context, arrival order for what does not suspend, exceptions, cancellation,
and destroy while a dispatch is suspended.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _pair import Pair, open_pair

import aiocomm
from aiocomm._runtime import current_dispatch

LIMIT = 30.0  # seconds; for what must happen, far above its real time

tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with open_pair(Pair) as opened:
        yield opened


class Servant:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = asyncio.Event()
        self.seen: list[Any] = []

    async def where(self, payload: bytes, current: aiocomm.Current) -> bytes:
        # No suspension: the drain ran this, with a stand-in for its task.
        return b"task" if asyncio.current_task() is not None else b"no task"

    async def where_after_yield(self, payload: bytes, current: aiocomm.Current) -> bytes:
        first = asyncio.current_task()
        await asyncio.sleep(0)  # a bare yield: one loop turn, still the stand-in
        if asyncio.current_task() is not first:
            return b"other"
        await asyncio.sleep(0.001)  # a future: a task runs the rest
        task = asyncio.current_task()
        return b"task" if isinstance(task, asyncio.Task) else b"no task"

    async def spins(self, payload: bytes, current: aiocomm.Current) -> bytes:
        # Bare yields until cancelled through the task it was given first.
        me = asyncio.current_task()
        assert me is not None
        self.seen.append(me)
        try:
            while True:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            return b"cancelled while spinning: %d" % me.cancelling()

    async def cancelled_from_first_step(self, payload: bytes, current: aiocomm.Current) -> bytes:
        # What the first step's task is asked reaches the task that runs the rest.
        me = asyncio.current_task()
        assert me is not None
        asyncio.get_running_loop().call_later(0.01, me.cancel)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return b"cancelled: %d" % me.cancelling()
        return b"not cancelled"

    async def with_timeout(self, payload: bytes, current: aiocomm.Current) -> bytes:
        # asyncio.timeout and TaskGroup need the current task, from the first step on.
        async with asyncio.timeout(float(payload.decode())):
            async with asyncio.TaskGroup() as group:
                child = group.create_task(asyncio.sleep(0.01, b"child"))
            await asyncio.sleep(0.01)
        return child.result()

    async def record(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.order.append(payload.decode())
        return payload

    def record_plain(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.order.append(payload.decode())
        return payload

    async def context(self, payload: bytes, current: aiocomm.Current) -> bytes:
        before = (tag.get(), current_dispatch.get() is current)
        tag.set(payload.decode())
        await asyncio.sleep(0.01)
        after = (tag.get(), current_dispatch.get() is current)
        return repr((before, after)).encode()

    async def set_tag(self, payload: bytes, current: aiocomm.Current) -> bytes:
        tag.set(payload.decode())
        return b""

    async def get_tag(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return tag.get().encode()

    async def fail_now(self, payload: bytes, current: aiocomm.Current) -> bytes:
        raise ValueError("now")

    async def fail_later(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0)
        raise ValueError("later")

    async def user_now(self, payload: bytes, current: aiocomm.Current) -> bytes:
        raise aiocomm.UserError(b"u-now")

    async def user_later(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0)
        raise aiocomm.UserError(b"u-later")

    async def wrong_type(self, payload: bytes, current: aiocomm.Current) -> Any:
        return 12

    async def wait(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0.001)  # a timer's future: from here on, a task
        self.seen.append(asyncio.current_task())
        await self.release.wait()
        return b"released"

    async def catches_cancel(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0.001)
        self.seen.append(asyncio.current_task())
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            return b"handled"
        return b"released"


async def test_a_coroutine_servant_is_a_task_from_its_first_step(pair: Pair) -> None:
    pair.adapter.add(Servant(), "s")
    prx = pair.proxy("s")
    native = pair.server.stats()["native_dispatches"]
    assert await prx.invoke("where", b"") == b"task"
    assert await prx.invoke("where_after_yield", b"") == b"task"
    assert pair.server.stats()["native_dispatches"] == native + 2
    assert await asyncio.wait_for(prx.invoke("cancelled_from_first_step"), LIMIT) == b"cancelled: 1"


async def test_a_servant_that_only_yields_is_cancelled_at_its_next_step(pair: Pair) -> None:
    servant = Servant()
    pair.adapter.add(servant, "s")
    call = asyncio.ensure_future(pair.proxy("s").invoke("spins"))
    for _ in range(int(LIMIT / 0.01)):
        if servant.seen:
            break
        await asyncio.sleep(0.01)
    assert servant.seen[0].cancel() is True
    assert await asyncio.wait_for(call, LIMIT) == b"cancelled while spinning: 1"
    assert pair.server.stats()["python_dispatches_in_flight"] == 0


async def test_asyncio_timeout_and_task_groups_work_in_a_servant(pair: Pair) -> None:
    pair.adapter.add(Servant(), "s")
    prx = pair.proxy("s")
    assert await prx.invoke("with_timeout", b"30") == b"child"
    # A timeout that expires cancels the servant's own task, as asyncio means it to.
    with pytest.raises(aiocomm.UnknownError, match="TimeoutError"):
        await prx.invoke("with_timeout", b"0.001")
    assert await prx.invoke("where", b"") == b"task"  # and the next dispatch is unharmed


async def test_arrival_order_is_kept_across_plain_and_async(pair: Pair) -> None:
    servant = Servant()
    pair.adapter.add(servant, "s")
    prx = pair.proxy("s")
    calls = [prx.invoke("record" if i % 3 else "record_plain", str(i).encode())
             for i in range(60)]
    await asyncio.gather(*calls)
    assert servant.order == [str(i) for i in range(60)]


async def test_each_dispatch_has_its_own_context(pair: Pair) -> None:
    pair.adapter.add(Servant(), "s")
    prx = pair.proxy("s")
    results = await asyncio.gather(*[prx.invoke("context", name.encode())
                                     for name in ("a", "b", "c")])
    for name, result in zip(("a", "b", "c"), results, strict=True):
        assert result == repr((("unset", True), (name, True))).encode()
    # A variable set by a dispatch that ended in the drain does not leak
    # into the loop's context, nor into the next dispatch.
    await prx.invoke("set_tag", b"leaked?")
    assert await prx.invoke("get_tag", b"") == b"unset"
    assert tag.get() == "unset"


@pytest.mark.parametrize(("operation", "error", "text"), [
    ("fail_now", aiocomm.UnknownError, "ValueError: now"),
    ("fail_later", aiocomm.UnknownError, "ValueError: later"),
    ("wrong_type", aiocomm.UnknownError, "returned int"),
])
async def test_exceptions_before_and_after_suspending(pair: Pair, operation: str,
                                                      error: type[Exception], text: str) -> None:
    pair.adapter.add(Servant(), "s")
    with pytest.raises(error, match=text):
        await pair.proxy("s").invoke(operation, b"")


@pytest.mark.parametrize("operation", ["user_now", "user_later"])
async def test_user_errors_before_and_after_suspending(pair: Pair, operation: str) -> None:
    pair.adapter.add(Servant(), "s")
    with pytest.raises(aiocomm.UserError) as caught:
        await pair.proxy("s").invoke(operation, b"")
    assert caught.value.payload == f"u-{operation.split('_')[1]}".encode()


async def test_cancelling_a_suspended_dispatch_answers_it(pair: Pair) -> None:
    servant = Servant()
    pair.adapter.add(servant, "s")
    prx = pair.proxy("s")
    call = asyncio.ensure_future(prx.invoke("wait", b""))
    handled = asyncio.ensure_future(prx.invoke("catches_cancel", b""))
    for _ in range(int(LIMIT / 0.01)):
        if len(servant.seen) == 2:
            break
        await asyncio.sleep(0.01)
    tasks = servant.seen
    assert all(isinstance(t, asyncio.Task) for t in tasks), tasks
    for task in tasks:
        task.cancel()
    with pytest.raises(aiocomm.UnknownLocalError, match="cancelled"):
        await asyncio.wait_for(call, LIMIT)
    # A servant that handles the cancellation answers as it chooses.
    assert await asyncio.wait_for(handled, LIMIT) == b"handled"
    assert pair.server.stats()["python_dispatches_in_flight"] == 0


async def test_destroy_waits_for_a_suspended_dispatch_and_sends_its_reply(pair: Pair) -> None:
    servant = Servant()
    pair.adapter.add(servant, "s")
    call = asyncio.ensure_future(pair.proxy("s").invoke("wait", b""))
    for _ in range(int(LIMIT / 0.01)):
        if servant.seen:
            break
        await asyncio.sleep(0.01)
    destroy = asyncio.ensure_future(pair.server.destroy())
    await asyncio.sleep(0.2)
    assert not destroy.done()
    servant.release.set()
    assert await asyncio.wait_for(call, LIMIT) == b"released"
    await asyncio.wait_for(destroy, LIMIT)


async def test_held_requests_dispatched_by_activate_inside_a_task(pair: Pair) -> None:
    """activate() called from a task dispatches the requests its adapter held:
    a coroutine servant's first step stands in as the current task meanwhile,
    and the calling task is current again once activate() returns."""
    holding = pair.server.create_object_adapter()
    servant = Servant()
    holding.add(servant, "s")
    prx = pair.client.proxy(f"s:{holding.endpoints[0]}")
    calls = [asyncio.ensure_future(prx.invoke(op, b"x"))
             for op in ("where", "where_after_yield", "record")]
    for _ in range(int(LIMIT / 0.01)):  # until the server holds all three
        if pair.server.stats()["dispatches_in_flight"] >= 3:
            break
        await asyncio.sleep(0.01)
    me = asyncio.current_task()
    holding.activate()
    assert asyncio.current_task() is me
    assert await asyncio.wait_for(asyncio.gather(*calls), LIMIT) == [b"task", b"task", b"x"]
    assert servant.order == ["x"]
