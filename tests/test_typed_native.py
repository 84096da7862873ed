"""Typed servants (generated from Slice) on the native dispatch path: the drain
decodes the parameters with the operation's codec, calls the method (a plain
one, or an ``async def`` one whose first step it runs) and encodes the result.
What the Python runtime did for them stays true: Current and the dispatch
context variable, a context of its own per dispatch, arrival order for what
does not suspend, user exceptions declared or not, other errors, cancellation,
destroy while a dispatch is suspended, and parameters that do not decode.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _pair
import pytest

import aiocomm
import aiocomm.slice
from aiocomm._runtime import current_dispatch

LIMIT = 30.0  # seconds; for what must happen, far above its real time

NT: Any = aiocomm.slice.load(Path(__file__).parent / "slice" / "native_typed.ice").NT

tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")


def _where() -> str:
    return "task" if asyncio.current_task() is not None else "no task"


class Svc(NT.Svc):  # type: ignore[misc]
    def __init__(self) -> None:
        self.order: list[int] = []
        self.release = asyncio.Event()
        self.seen: list[Any] = []
        self.currents: list[Any] = []

    def add(self, a: int, b: int, current: aiocomm.Current) -> int:
        self.currents.append((current.operation, current_dispatch.get() is current))
        return a + b

    async def where(self, current: aiocomm.Current) -> str:
        return _where()  # no suspension: the drain runs this, as a task's first step

    async def whereAfterYield(self, current: aiocomm.Current) -> str:
        await asyncio.sleep(0)
        return _where()

    async def record(self, n: int, current: aiocomm.Current) -> int:
        self.order.append(n)
        return n

    def recordPlain(self, n: int, current: aiocomm.Current) -> int:
        self.order.append(n)
        return n

    async def context(self, name: str, current: aiocomm.Current) -> str:
        before = (tag.get(), current_dispatch.get() is current)
        tag.set(name)
        await asyncio.sleep(0.01)
        after = (tag.get(), current_dispatch.get() is current)
        return repr((before, after))

    async def getTag(self, current: aiocomm.Current) -> str:
        return tag.get()

    async def setTag(self, t: str, current: aiocomm.Current) -> None:
        tag.set(t)

    async def failDeclared(self, later: bool, current: aiocomm.Current) -> None:
        if later:
            await asyncio.sleep(0)
        raise NT.Boom(why="declared", code=3)

    async def failUndeclared(self, later: bool, current: aiocomm.Current) -> None:
        if later:
            await asyncio.sleep(0)
        raise NT.Other(code=5)

    async def failPlain(self, later: bool, current: aiocomm.Current) -> None:
        if later:
            await asyncio.sleep(0)
        raise ValueError("plain")

    async def wrongType(self, later: bool, current: aiocomm.Current) -> Any:
        if later:
            await asyncio.sleep(0)
        return "not an int"

    async def wait(self, current: aiocomm.Current) -> str:
        await asyncio.sleep(0.001)  # a timer's future: from here on, a task
        self.seen.append(asyncio.current_task())
        await self.release.wait()
        return "released"

    async def catchesCancel(self, current: aiocomm.Current) -> str:
        await asyncio.sleep(0.001)
        self.seen.append(asyncio.current_task())
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            return "handled"
        return "released"

    def echo(self, p: Any, current: aiocomm.Current) -> Any:
        return p

    def echoLine(self, line: Any, current: aiocomm.Current) -> Any:
        self.seen.append(line)
        return line


class PlainErrors(Svc):
    """The same errors from plain methods."""

    def failDeclared(self, later: bool, current: aiocomm.Current) -> None:
        raise NT.Boom(why="declared", code=3)

    def failUndeclared(self, later: bool, current: aiocomm.Current) -> None:
        raise NT.Other(code=5)

    def failPlain(self, later: bool, current: aiocomm.Current) -> None:
        raise ValueError("plain")

    def wrongType(self, later: bool, current: aiocomm.Current) -> Any:
        return "not an int"


class Pair(_pair.Pair):
    def svc(self, identity: str) -> Any:
        return NT.SvcPrx(self.proxy(identity))


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with _pair.open_pair(Pair) as opened:
        yield opened


def native_count(pair: Pair) -> int:
    return int(pair.server.stats()["native_dispatches"])


async def test_typed_calls_are_dispatched_natively(pair: Pair) -> None:
    servant = Svc()
    pair.adapter.add(servant, "s")
    prx = pair.svc("s")
    before = native_count(pair)
    assert await prx.add(2, 40) == 42
    assert await prx.echo(NT.Pt(3, "three")) == NT.Pt(3, "three")
    assert await prx.where() == "task"
    assert await prx.whereAfterYield() == "task"
    assert native_count(pair) == before + 4
    assert servant.currents == [("add", True)]


async def test_arrival_order_is_kept_across_plain_and_async(pair: Pair) -> None:
    servant = Svc()
    pair.adapter.add(servant, "s")
    prx = pair.svc("s")
    results = await asyncio.gather(*[prx.record(i) if i % 3 else prx.recordPlain(i)
                                     for i in range(60)])
    assert results == list(range(60))
    assert servant.order == list(range(60))


async def test_each_dispatch_has_its_own_context(pair: Pair) -> None:
    pair.adapter.add(Svc(), "s")
    prx = pair.svc("s")
    results = await asyncio.gather(*[prx.context(name) for name in ("a", "b", "c")])
    for name, result in zip(("a", "b", "c"), results, strict=True):
        assert result == repr((("unset", True), (name, True)))
    # Set by a dispatch that ended in the drain: leaks neither into the loop's
    # context nor into the next dispatch.
    await prx.setTag("leaked?")
    assert await prx.getTag() == "unset"
    assert tag.get() == "unset"


@pytest.mark.parametrize("servant_type", [Svc, PlainErrors])
@pytest.mark.parametrize("later", [False, True])
async def test_exceptions(pair: Pair, servant_type: type[Any], later: bool) -> None:
    pair.adapter.add(servant_type(), "s")
    prx = pair.svc("s")
    with pytest.raises(NT.Boom) as caught:
        await prx.failDeclared(later)
    assert (caught.value.why, caught.value.code) == ("declared", 3)
    with pytest.raises(aiocomm.UnknownUserError, match="::NT::Other"):
        await prx.failUndeclared(later)
    with pytest.raises(aiocomm.UnknownError, match="ValueError: plain"):
        await prx.failPlain(later)
    with pytest.raises(aiocomm.UnknownError, match="TypeError"):
        await prx.wrongType(later)
    # The connection and the servant are still fine.
    assert await prx.add(1, 1) == 2


async def test_what_the_drain_declines_the_runtime_answers(pair: Pair) -> None:
    pair.adapter.add(Svc(), "s")
    raw = pair.proxy("s")
    # Parameters that do not decode: a local error of the server's, as before.
    with pytest.raises(aiocomm.UnknownLocalError, match="cannot decode"):
        await raw.invoke("add", b"\x01")
    # An operation the servant class does not define, and one it does not know.
    with pytest.raises(aiocomm.OperationNotExistError):
        await pair.svc("s").missing()
    with pytest.raises(aiocomm.OperationNotExistError):
        await raw.invoke("nosuch", b"")
    assert await pair.svc("s").add(20, 22) == 42


async def test_cancelling_a_suspended_typed_dispatch_answers_it(pair: Pair) -> None:
    servant = Svc()
    pair.adapter.add(servant, "s")
    prx = pair.svc("s")
    call = asyncio.ensure_future(prx.wait())
    handled = asyncio.ensure_future(prx.catchesCancel())
    for _ in range(int(LIMIT / 0.01)):
        if len(servant.seen) == 2:
            break
        await asyncio.sleep(0.01)
    assert all(isinstance(t, asyncio.Task) for t in servant.seen), servant.seen
    for task in servant.seen:
        task.cancel()
    with pytest.raises(aiocomm.UnknownLocalError, match="cancelled"):
        await asyncio.wait_for(call, LIMIT)
    assert await asyncio.wait_for(handled, LIMIT) == "handled"
    assert pair.server.stats()["python_dispatches_in_flight"] == 0


async def test_destroy_waits_for_a_suspended_typed_dispatch(pair: Pair) -> None:
    servant = Svc()
    pair.adapter.add(servant, "s")
    call = asyncio.ensure_future(pair.svc("s").wait())
    for _ in range(int(LIMIT / 0.01)):
        if servant.seen:
            break
        await asyncio.sleep(0.01)
    destroy = asyncio.ensure_future(pair.server.destroy())
    await asyncio.sleep(0.2)
    assert not destroy.done()
    servant.release.set()
    assert await asyncio.wait_for(call, LIMIT) == "released"
    await asyncio.wait_for(destroy, LIMIT)


async def test_large_typed_params_decode_from_the_bytes_they_were_read_into(pair: Pair) -> None:
    # From 1 KiB up, params the loop reads are copied once, into a bytes
    # object (as reply bodies are), and the codec decodes them from there.
    servant = Svc()
    pair.adapter.add(servant, "s")
    before = pair.server.stats()["owned_bodies"]
    for n in (10, 200, 2000):  # about 0.1, 1.6 and 17 KiB of params
        line = NT.Line(NT.Pt(1, "a"), NT.Pt(2, "b"), [NT.Pt(i, "x" * (i % 7)) for i in range(n)])
        assert await pair.svc("s").echoLine(line) == line
    owned = pair.server.stats()["owned_bodies"] - before
    if pair.server.options["loop_reads"]:
        assert 1 <= owned <= 2  # 2, unless a loaded machine handed a read to an I/O thread
    else:
        assert owned == 0  # the I/O threads read: the pooled path


async def test_decoded_structs_and_lists_are_tracked_by_the_collector(pair: Pair) -> None:
    # The codec keeps what it builds away from the collector while it decodes;
    # once decoded, every struct and list is tracked again, and a cycle made
    # of them is collected.
    servant = Svc()
    pair.adapter.add(servant, "s")
    more = [NT.Pt(i, str(i)) for i in range(2000)]
    line = await pair.svc("s").echoLine(NT.Line(NT.Pt(1, "a"), NT.Pt(2, "b"), more))
    assert line == NT.Line(NT.Pt(1, "a"), NT.Pt(2, "b"), more)
    for decoded in (line, servant.seen[0]):  # by the client's codec, and the server's
        assert gc.is_tracked(decoded) and gc.is_tracked(decoded.a)
        assert gc.is_tracked(decoded.more) and all(gc.is_tracked(p) for p in decoded.more)
    servant.seen.clear()
    line.more.append(line)  # a cycle: line -> more -> line
    gone = weakref.ref(line)
    del line
    gc.collect()
    assert gone() is None


async def test_an_authorize_hook_sees_typed_requests() -> None:
    # Every typed request, plain or async def, is put to the hook first.
    seen: list[str] = []

    def authorize(current: aiocomm.Current) -> bool:
        seen.append(current.operation)
        return current.operation != "add"

    server = aiocomm.Communicator()
    client = aiocomm.Communicator(invocation_timeout=LIMIT)
    try:
        adapter = server.create_object_adapter(authorize=authorize)
        adapter.add(Svc(), "s")
        adapter.activate()
        prx = NT.SvcPrx(client.proxy(f"s:{adapter.endpoints[0]}"))
        assert await prx.echo(NT.Pt(1, "one")) == NT.Pt(1, "one")
        assert await prx.getTag() == "unset"
        with pytest.raises(aiocomm.PermissionDeniedError):
            await prx.add(1, 2)
        assert seen == ["echo", "getTag", "add"]
    finally:
        await client.destroy()
        await asyncio.wait_for(server.destroy(), LIMIT)
