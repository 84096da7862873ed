"""The native dispatch path: which requests take it, and that it keeps every
promise of the Python runtime's dispatch (order, Current, context, cycles)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import _pair
import pytest

import aiocomm
from aiocomm._runtime import current_dispatch


class Pair(_pair.Pair):
    def native(self) -> int:
        return self.server.stats()["native_dispatches"]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    async with _pair.open_pair(Pair, activate=False) as opened:
        yield opened


class Echo:
    type_ids = ("::demo::Echo",)

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload

    async def later(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0)
        return payload


class Blobject:
    def ice_invoke(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return current.operation.encode()


async def test_every_servant_form_is_dispatched_natively(pair: Pair) -> None:
    pair.adapter.add(Echo(), "echo")
    pair.adapter.add(Blobject(), "blob")
    pair.adapter.add_default_servant(Echo(), "any")
    pair.adapter.add_default_servant(Echo())
    pair.adapter.activate()
    echo, blob, default = pair.proxy("echo"), pair.proxy("blob"), pair.proxy("any/x")

    before = pair.native()
    assert await asyncio.gather(*(echo.invoke("echo", bytes([i])) for i in range(50))) == [
        bytes([i]) for i in range(50)]
    assert pair.native() - before == 50
    # An async method is called natively too; its task replies later.
    assert await echo.invoke("later", b"a") == b"a"
    assert pair.native() - before == 51
    # A default servant is found natively, as the adapter finds it.
    assert await default.invoke("echo", b"d") == b"d"
    assert await pair.proxy("other/x").invoke("echo", b"e") == b"e"  # the catch-all one
    assert pair.native() - before == 53
    with pytest.raises(aiocomm.FacetNotExistError):  # never for a facet
        await pair.client.proxy(f"any/x -f f:{pair.adapter.endpoints[0]}").invoke("echo", b"f")

    # A Blobject's ice_invoke is called natively too.
    assert await blob.invoke("anything") == b"anything"
    assert pair.native() - before == 54
    # Built-ins and missing operations are answered without calling the servant.
    before = pair.native()
    assert await echo.invoke("ice_isA", b"\x0c::demo::Echo") == b"\x01"
    await echo.ping()
    with pytest.raises(aiocomm.OperationNotExistError):
        await echo.invoke("missing")
    with pytest.raises(aiocomm.OperationNotExistError):
        await echo.invoke("_private")
    assert pair.native() == before


_RUNTIME_ENDS = {"_finish_native", "_resume_native", "_unauthorized", "_answer", "_settle"}


async def test_requests_that_end_in_a_plain_result_run_no_python_of_the_runtime(
        pair: Pair) -> None:
    """The one path: every form of request that ends in bytes, None, a built-in's
    answer or "does not exist" is answered without a Python frame of aiocomm's
    server side; only what needs Python (an exception, a suspension) goes there."""
    pair.adapter.add(Echo(), "echo")
    pair.adapter.add(Blobject(), "blob")
    pair.adapter.add_default_servant(Echo(), "any")
    pair.adapter.activate()
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_name in _RUNTIME_ENDS and "aiocomm" in code.co_filename:
            calls.append(code.co_name)

    async def requests() -> None:
        await pair.proxy("echo").invoke("echo", b"x")
        await pair.proxy("blob").invoke("op", b"")
        await pair.proxy("any/y").invoke("echo", b"z")
        await pair.proxy("echo").ice_is_a("::demo::Echo")
        await pair.proxy("echo").ice_ids()
        for target, operation in (("ghost", "echo"), ("echo", "missing")):
            with pytest.raises(aiocomm.DispatchError):
                await pair.proxy(target).invoke(operation)
        with pytest.raises(aiocomm.FacetNotExistError):
            await pair.client.proxy(f"echo -f f:{pair.adapter.endpoints[0]}").invoke("echo")

    await requests()  # connected, warmed up
    import sys
    sys.setprofile(profile)
    try:
        await requests()
    finally:
        sys.setprofile(None)
    assert calls == []

    class Raises:
        def boom(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise ValueError("boom")

    pair.adapter.add(Raises(), "raises")
    sys.setprofile(profile)
    try:
        with pytest.raises(aiocomm.UnknownError):
            await pair.proxy("raises").invoke("boom")
    finally:
        sys.setprofile(None)
    assert "_finish_native" in calls  # the profile sees the runtime where it is used


async def test_requests_are_dispatched_in_arrival_order_across_both_paths(pair: Pair) -> None:
    calls: list[tuple[str, bytes]] = []

    class Note:
        def note(self, payload: bytes, current: aiocomm.Current) -> None:
            calls.append((current.identity.name, payload))

    class BlobNote:  # a Blobject: the runtime's
        def ice_invoke(self, payload: bytes, current: aiocomm.Current) -> None:
            calls.append((current.identity.name, payload))

    pair.adapter.add(Note(), "native")
    pair.adapter.add_default_servant(BlobNote())
    pair.adapter.activate()
    native, other = pair.proxy("native").oneway(), pair.proxy("other").oneway()
    sent = []
    for i in range(300):
        name = "native" if i % 3 else "other"
        sent.append((name, i.to_bytes(2, "little")))
    # One burst, one connection: the server drains these in a few batches
    # that mix the two paths.
    await asyncio.gather(*((native if name == "native" else other).invoke("note", payload)
                           for name, payload in sent))
    await pair.proxy("native").invoke("note", b"end")  # after every oneway, on that connection
    assert calls[:-1] == sent
    assert pair.server.stats()["native_dispatches"] >= 200


async def test_current_and_dispatch_context_match_across_servant_forms(pair: Pair) -> None:
    seen: dict[str, dict[str, Any]] = {}

    class Probe:
        def probe(self, payload: bytes, current: aiocomm.Current) -> bytes:
            seen[payload.decode()] = {
                "type": type(current), "identity": current.identity, "facet": current.facet,
                "operation": current.operation, "mode": current.mode,
                "context": current.context, "request_id_set": current.request_id > 0,
                "encoding": current.encoding, "adapter": current.adapter,
                "local": current.local_address, "remote": current.remote_address,
                "oneway": current.is_oneway, "dispatch": current_dispatch.get() is current,
            }
            current.context["mutable"] = "yes"  # the servant's own dict
            return b""

    class BlobProbe(Probe):  # a Blobject, found as a default servant
        def ice_invoke(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return self.probe(payload, current)

    probe = Probe()
    pair.adapter.add(probe, aiocomm.Identity("p", "cat"), "f")
    pair.adapter.add_default_servant(BlobProbe(), "cat")
    pair.adapter.activate()
    native = pair.client.proxy(f"cat/p -f f:{pair.adapter.endpoints[0]}")
    runtime = pair.proxy("cat/q")
    before = pair.native()
    await native.invoke("probe", b"native", idempotent=True, context={"k": "v"})
    await runtime.invoke("probe", b"runtime", idempotent=True, context={"k": "v"})
    assert pair.native() - before == 2
    a, b = seen["native"], seen["runtime"]
    assert a["type"] is aiocomm.Current
    assert a["identity"] == aiocomm.Identity("p", "cat") and a["facet"] == "f"
    assert b["identity"] == aiocomm.Identity("q", "cat") and b["facet"] == ""
    for key in ("type", "operation", "mode", "context", "request_id_set", "encoding",
                "adapter", "local", "remote", "oneway", "dispatch"):
        assert a[key] == b[key], key
    assert a["mode"] is aiocomm.OperationMode.IDEMPOTENT
    assert a["context"] == {"k": "v", "mutable": "yes"}
    assert a["adapter"] is pair.adapter and a["dispatch"] is True
    assert a["local"] is not None and a["local"][1] == int(pair.adapter.endpoints[0].split()[-1])


async def test_servant_errors_and_odd_results_are_finished_by_the_runtime(pair: Pair) -> None:
    class Odd:
        def fails(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise aiocomm.UserError(b"user payload")

        def crashes(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise ValueError("boom")

        def wrong(self, payload: bytes, current: aiocomm.Current) -> int:
            return 42

        def view(self, payload: bytes, current: aiocomm.Current) -> memoryview:
            return memoryview(b"view")

    pair.adapter.add(Odd(), "odd")
    pair.adapter.activate()
    odd = pair.proxy("odd")
    with pytest.raises(aiocomm.UserError) as user:
        await odd.invoke("fails")
    assert user.value.payload == b"user payload"
    with pytest.raises(aiocomm.UnknownError, match="boom"):
        await odd.invoke("crashes")
    with pytest.raises(aiocomm.UnknownError, match="int"):
        await odd.invoke("wrong")
    assert await odd.invoke("view") == b"view"
    assert pair.server.stats()["python_dispatches_in_flight"] == 0
    assert await odd.invoke("view") == b"view"  # the connection is still up


async def test_servant_deactivating_its_own_adapter_still_replies(pair: Pair) -> None:
    class Quitter:
        def quit(self, payload: bytes, current: aiocomm.Current) -> bytes:
            assert current.adapter is not None
            current.adapter.deactivate()
            return b"bye"

        def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return payload

    pair.adapter.add(Quitter(), "q")
    pair.adapter.activate()
    q = pair.proxy("q")
    assert await q.invoke("echo", b"hi") == b"hi"
    assert await asyncio.wait_for(q.invoke("quit"), 5) == b"bye"
    with pytest.raises(aiocomm.AiocommError):
        await asyncio.wait_for(q.invoke("echo", b"again"), 5)


@pytest.mark.parametrize("destroy", [True, False], ids=["destroyed", "never-destroyed"])
def test_servants_that_refer_back_are_collected(
        run_script: Callable[..., subprocess.CompletedProcess[str]], destroy: bool) -> None:
    # The inbox holds the adapter and its servants for the native path, and a
    # servant may hold the communicator: the collector must see that cycle.
    result = run_script(f"""
        import asyncio, gc, warnings, weakref
        import aiocomm

        class Keeper:
            def __init__(self, comm):
                self.comm = comm
            def echo(self, payload, current):
                return payload

        refs = []
        DESTROY = {destroy}

        async def main():
            comm = aiocomm.Communicator()
            adapter = comm.create_object_adapter()
            keeper = Keeper(comm)
            proxy = adapter.add(keeper, "k")
            adapter.activate()
            assert await proxy.invoke("echo", b"x") == b"x"
            assert comm.stats()["native_dispatches"] == 1
            refs.extend([weakref.ref(keeper), weakref.ref(adapter), weakref.ref(comm)])
            if DESTROY:
                await comm.destroy()

        warnings.simplefilter("ignore", ResourceWarning)  # never destroyed: it warns
        asyncio.run(main())
        gc.collect()
        print("alive", [r() is not None for r in refs])
    """, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "alive [False, False, False]", result.stdout
