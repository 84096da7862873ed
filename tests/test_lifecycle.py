"""The communicator's lifecycle, in process, on both loops."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
import warnings
import weakref

import pytest

import aiocomm

VALIDATE = bytes.fromhex("49 63 65 50 01 00 01 00 03 00 0e 00 00 00")


class Slow:
    """A servant whose dispatches take a while, to have work in flight."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.dispatched = 0
        self.finished = 0

    async def wait(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.dispatched += 1
        self.started.set()
        await self.release.wait()
        self.finished += 1
        return payload

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


async def test_async_with_destroys() -> None:
    async with aiocomm.Communicator() as comm:
        assert not comm.is_destroyed
        assert not comm.is_shutdown
    assert comm.is_destroyed
    assert comm.is_shutdown


async def test_destroy_is_idempotent() -> None:
    comm = aiocomm.Communicator()
    await comm.destroy()
    await comm.destroy()
    assert comm.is_destroyed


async def test_create_destroy_cycles() -> None:
    for _ in range(300):
        comm = aiocomm.Communicator()
        adapter = comm.create_object_adapter()
        adapter.activate()
        await comm.destroy()
    assert comm.is_destroyed


async def test_concurrent_destroy_callers_all_complete() -> None:
    comm = aiocomm.Communicator()
    comm.create_object_adapter().activate()
    results = await asyncio.wait_for(asyncio.gather(*(comm.destroy() for _ in range(10))), 10)
    assert results == [None] * 10
    assert comm.is_destroyed


async def test_cancelled_destroy_still_runs_to_the_end() -> None:
    comm = aiocomm.Communicator()
    server = Slow()
    adapter = comm.create_object_adapter()
    prx = adapter.add(server, "slow")
    adapter.activate()
    call = asyncio.ensure_future(prx.invoke("wait", b"x"))
    await asyncio.wait_for(server.started.wait(), 5)

    task = asyncio.ensure_future(comm.destroy())
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the dispatch in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancelling the awaiting task did not cancel destroy: once the dispatch
    # finishes, destroy completes and a later await returns at once.
    server.release.set()
    await asyncio.wait_for(comm.destroy(), 10)
    assert comm.is_destroyed
    assert server.finished == 1
    # The reply was computed before the connections closed: it may arrive, or
    # the invocation fails as destroyed; it never hangs.
    (result,) = await asyncio.gather(call, return_exceptions=True)
    assert result == b"x" or isinstance(result, aiocomm.CommunicatorDestroyedError)


async def test_is_destroyed_only_once_destroy_has_finished() -> None:
    comm = aiocomm.Communicator()
    server = Slow()
    adapter = comm.create_object_adapter()
    prx = adapter.add(server, "slow")
    adapter.activate()
    call = asyncio.ensure_future(prx.invoke("wait", b"x"))
    await asyncio.wait_for(server.started.wait(), 10)
    assert comm.stats()["destroying"] == 0 and comm.stats()["destroyed"] == 0
    assert "live" in repr(comm)

    destroying = asyncio.ensure_future(comm.destroy())
    await asyncio.sleep(0.2)
    # The dispatch in flight holds destroy up: it has begun, not finished.
    assert not destroying.done()
    assert not comm.is_destroyed
    assert repr(comm).startswith("<aiocomm.Communicator destroying at 0x")
    stats = comm.stats()
    assert (stats["destroying"], stats["destroyed"]) == (1, 0)
    # Everything destroy refuses is refused from its start.
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        comm.create_object_adapter()
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        comm.proxy("x:tcp -h 127.0.0.1 -p 1")
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        await prx.invoke("echo")

    server.release.set()
    await asyncio.wait_for(destroying, 10)
    assert comm.is_destroyed
    assert repr(comm).startswith("<aiocomm.Communicator destroyed at 0x")
    stats = comm.stats()
    assert (stats["destroying"], stats["destroyed"]) == (0, 1)
    assert server.finished == 1
    await asyncio.gather(call, return_exceptions=True)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_destroy_awaited_on_another_loop_and_on_a_loop_closed_before_it_ends() -> None:
    # A peer that validates and then never closes: the graceful close waits
    # for it (close_timeout), so destroy is certainly in progress meanwhile.
    listener = socket.create_server(("127.0.0.1", 0))
    peers: list[socket.socket] = []

    def accept() -> None:
        peer, _ = listener.accept()
        peer.sendall(VALIDATE)
        peers.append(peer)

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    comm = aiocomm.Communicator(close_timeout=1.5)
    try:
        port = listener.getsockname()[1]
        call = asyncio.ensure_future(comm.proxy(f"x:tcp -h 127.0.0.1 -p {port}").invoke("op"))
        await asyncio.to_thread(acceptor.join, 10)
        assert peers
        fds_before = _open_fds()

        outcome: dict[str, object] = {}

        def other_loops() -> None:
            # One loop starts waiting and is closed before destroy ends (its
            # future stays pending: nobody is left to tell); another awaits
            # destroy to its end.
            closed_early = asyncio.new_event_loop()

            async def start() -> asyncio.Future[None]:
                return asyncio.ensure_future(comm.destroy())

            outcome["orphan"] = closed_early.run_until_complete(start())
            closed_early.close()

            async def wait() -> None:
                await comm.destroy()
                outcome["destroyed_seen_there"] = comm.is_destroyed

            asyncio.run(wait())

        await asyncio.wait_for(asyncio.to_thread(other_loops), 20)
        assert outcome["destroyed_seen_there"] is True
        assert comm.is_destroyed
        # This loop, the bound one, learns of it too, after its calls failed.
        await asyncio.wait_for(comm.destroy(), 10)
        with pytest.raises(aiocomm.CommunicatorDestroyedError):
            await call
        # The descriptor the loops watched (a dup of the core's) is closed
        # again, although a loop closed while it was watching it.
        assert _open_fds() - fds_before == set()
    finally:
        await comm.destroy()
        listener.close()
        for peer in peers:
            peer.close()


def test_destroy_of_a_communicator_never_bound_to_a_loop() -> None:
    comm = aiocomm.Communicator()

    async def main() -> None:
        waiters = [asyncio.ensure_future(comm.destroy()) for _ in range(3)]
        waiters[0].cancel()  # one caller gives up: the others still see the end
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 10)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [None, None]
        assert comm.is_destroyed

    asyncio.run(main())
    assert comm.loop is None


async def test_destroy_waits_for_dispatches_and_sends_their_replies() -> None:
    async with aiocomm.Communicator() as client:
        server_comm = aiocomm.Communicator()
        server = Slow()
        adapter = server_comm.create_object_adapter()
        adapter.add(server, "slow")
        adapter.activate()
        prx = client.proxy(f"slow:{adapter.endpoints[0]}")
        calls = [asyncio.ensure_future(prx.invoke("wait", bytes([i]))) for i in range(5)]
        # All five must be dispatching before destroy: a request the server
        # has not dispatched yet is not answered but retried by the client
        # after the graceful close (Ice's rule), and then refused. The five
        # may reach the server in more than one read.
        for _ in range(500):
            if server.dispatched == 5:
                break
            await asyncio.sleep(0.01)
        assert server.dispatched == 5
        destroying = asyncio.ensure_future(server_comm.destroy())
        await asyncio.sleep(0.1)
        assert not destroying.done()
        server.release.set()
        await asyncio.wait_for(destroying, 10)
        # Every dispatch that was in flight finished and its reply reached us.
        assert [await asyncio.wait_for(c, 5) for c in calls] == [bytes([i]) for i in range(5)]


async def test_destroy_fails_outstanding_invocations() -> None:
    async with aiocomm.Communicator() as server_comm:
        server = Slow()
        adapter = server_comm.create_object_adapter()
        adapter.add(server, "slow")
        adapter.activate()
        client = aiocomm.Communicator()
        prx = client.proxy(f"slow:{adapter.endpoints[0]}")
        calls = [asyncio.ensure_future(prx.invoke("wait")) for _ in range(3)]
        await asyncio.wait_for(server.started.wait(), 5)
        await asyncio.wait_for(client.destroy(), 10)
        for call in calls:
            with pytest.raises(aiocomm.CommunicatorDestroyedError):
                await call
        server.release.set()


async def test_servant_may_await_destroy_of_its_own_communicator() -> None:
    comm = aiocomm.Communicator()
    done = asyncio.Event()

    class Stopper:
        async def stop(self, payload: bytes, current: aiocomm.Current) -> bytes:
            await comm.destroy()
            done.set()
            return b""

    adapter = comm.create_object_adapter()
    prx = adapter.add(Stopper(), "stopper")
    adapter.activate()
    call = asyncio.ensure_future(prx.invoke("stop"))
    await asyncio.wait_for(done.wait(), 10)
    assert comm.is_destroyed
    with pytest.raises(aiocomm.AiocommError):
        await asyncio.wait_for(call, 5)


async def test_every_use_after_destroy_raises() -> None:
    comm = aiocomm.Communicator()
    adapter = comm.create_object_adapter()
    prx = adapter.add(Slow(), "slow")
    adapter.activate()
    await comm.destroy()
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        comm.create_object_adapter()
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        comm.proxy("x:tcp -h 127.0.0.1 -p 1")
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        await prx.invoke("echo")
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        await prx.ping()
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        adapter.add(Slow(), "other")
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        adapter.activate()
    assert issubclass(aiocomm.CommunicatorDestroyedError, aiocomm.AiocommError)
    comm.shutdown()  # harmless
    await comm.wait_for_shutdown()


async def test_shutdown_then_wait_for_shutdown_waits_for_dispatches() -> None:
    async with aiocomm.Communicator() as comm:
        server = Slow()
        adapter = comm.create_object_adapter()
        prx = adapter.add(server, "slow")
        adapter.activate()
        call = asyncio.ensure_future(prx.invoke("wait", b"r"))
        await asyncio.wait_for(server.started.wait(), 5)
        waiter = asyncio.ensure_future(comm.wait_for_shutdown())
        await asyncio.sleep(0.05)
        assert not waiter.done()  # shutdown has not happened yet
        comm.shutdown()
        assert comm.is_shutdown
        await asyncio.sleep(0.05)
        assert not waiter.done()  # a dispatch is still in flight
        server.release.set()
        await asyncio.wait_for(waiter, 5)
        assert await asyncio.wait_for(call, 5) == b"r"
        with pytest.raises(aiocomm.CommunicatorDestroyedError):
            comm.create_object_adapter()


async def test_collected_communicator_warns_and_its_proxies_fail() -> None:
    comm = aiocomm.Communicator()
    adapter = comm.create_object_adapter()
    prx = adapter.add(Slow(), "slow")
    adapter.activate()
    assert await prx.invoke("echo", b"1") == b"1"
    with pytest.warns(ResourceWarning, match="unclosed"):
        del comm
        gc.collect()
    assert prx.communicator is None
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        prx.invoke("echo")
    assert adapter.communicator is None


async def test_pending_calls_fail_when_their_communicator_is_collected() -> None:
    async with aiocomm.Communicator() as server_comm:
        server = Slow()
        adapter = server_comm.create_object_adapter()
        adapter.add(server, "slow")
        adapter.activate()
        client = aiocomm.Communicator()
        call = asyncio.ensure_future(client.proxy(f"slow:{adapter.endpoints[0]}").invoke("wait"))
        await asyncio.wait_for(server.started.wait(), 5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del client
            gc.collect()
        with pytest.raises(aiocomm.CommunicatorDestroyedError):
            await asyncio.wait_for(call, 10)
        server.release.set()


async def test_collection_on_another_thread_while_busy() -> None:
    async with aiocomm.Communicator() as server_comm:
        adapter = server_comm.create_object_adapter()
        adapter.add(Slow(), "slow")
        adapter.activate()
        client = aiocomm.Communicator()
        prx = client.proxy(f"slow:{adapter.endpoints[0]}")
        # Keep the native threads busy delivering replies.
        calls = [asyncio.ensure_future(prx.invoke("echo", b"x" * 100)) for _ in range(500)]
        await asyncio.sleep(0)
        holder = [client]
        del client
        errors: list[BaseException] = []

        def drop() -> None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    holder.clear()
                    gc.collect()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=drop)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        assert not thread.is_alive(), "collection on another thread hung"
        assert errors == []
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        for r in results:
            assert r == b"x" * 100 or isinstance(r, aiocomm.CommunicatorDestroyedError)


async def test_used_from_another_loop_raises_wrong_loop_error() -> None:
    async with aiocomm.Communicator() as comm:
        prx = comm.proxy("x:tcp -h 127.0.0.1 -p 1")
        errors: list[BaseException] = []

        def other_loop() -> None:
            async def use() -> None:
                try:
                    prx.invoke("op")
                except BaseException as exc:
                    errors.append(exc)
                try:
                    comm.create_object_adapter()
                except BaseException as exc:
                    errors.append(exc)

            asyncio.run(use())

        thread = threading.Thread(target=other_loop)
        thread.start()
        thread.join(10)
        assert [type(e) for e in errors] == [aiocomm.WrongLoopError] * 2
        assert isinstance(errors[0], RuntimeError)


async def test_deactivated_adapter_refuses_new_servants_and_activation() -> None:
    async with aiocomm.Communicator() as comm:
        adapter = comm.create_object_adapter()
        adapter.activate()
        await adapter.deactivate()
        with pytest.raises(aiocomm.AdapterDeactivatedError):
            adapter.add(Slow(), "late")
        with pytest.raises(aiocomm.AdapterDeactivatedError):
            adapter.activate()
        assert issubclass(aiocomm.AdapterDeactivatedError, RuntimeError)
        # The communicator itself is still usable.
        other = comm.create_object_adapter()
        prx = other.add(Slow(), "s")
        other.activate()
        assert await prx.invoke("echo", b"ok") == b"ok"


async def test_io_thread_pool_serves_many_connections() -> None:
    async with aiocomm.Communicator(io_threads=3) as server:
        adapter = server.create_object_adapter()
        adapter.add(Slow(), "s")
        adapter.activate()
        clients = [aiocomm.Communicator(io_threads=2) for _ in range(6)]
        try:
            proxies = [c.proxy(f"s:{adapter.endpoints[0]}") for c in clients]
            results = await asyncio.wait_for(asyncio.gather(*(
                p.invoke("echo", bytes([i, j])) for i, p in enumerate(proxies) for j in range(50)
            )), 10)
            assert results == [bytes([i, j]) for i in range(6) for j in range(50)]
            assert server.stats()["connections"] == 6
        finally:
            await asyncio.gather(*(c.destroy() for c in clients))


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        aiocomm.Communicator(io_threads=0)
    with pytest.raises(TypeError):
        aiocomm.Communicator(io_threads=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aiocomm.Communicator(idle_timeout=0)
    with pytest.raises(TypeError):
        aiocomm.Communicator(message_size_max="big")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aiocomm.Communicator(invocation_timeout=-1)


async def test_one_connection_per_endpoint_across_endpoint_lists() -> None:
    async with aiocomm.Communicator() as server, aiocomm.Communicator() as client:
        adapter = server.create_object_adapter()
        adapter.add(Slow(), "s")
        adapter.activate()
        live = adapter.endpoints[0]
        dead = "tcp -h 127.0.0.1 -p 1"  # nothing listens on port 1
        proxies = [client.proxy(f"s:{live}"), client.proxy(f"s:{dead}:{live}"),
                   client.proxy(f"s:{live}:{dead}")]
        for prx in proxies:
            assert await prx.invoke("echo", b"1") == b"1"
        # Whatever list a proxy carries, the endpoint it reaches is shared.
        assert client.stats()["connections"] == 1
        assert server.stats()["connections"] == 1


async def test_a_destroyed_communicator_is_freed_without_the_cycle_collector() -> None:
    """Nothing below the communicator (proxies, adapters, locator clients, the
    channel they share) refers back to it strongly: dropping the last
    reference frees it, with its native handle, at once."""
    comm = aiocomm.Communicator(locator="IceGrid/Locator:tcp -h 127.0.0.1 -p 1")
    adapter = comm.create_object_adapter()
    prx = adapter.add(Slow(), "slow")
    adapter.activate()
    assert await prx.invoke("echo", b"1") == b"1"
    indirect = comm.proxy("hello@HelloAdapter").with_locator("Other/Locator:tcp -h 127.0.0.1 -p 2")
    await comm.destroy()
    freed = weakref.ref(comm)
    gc.disable()
    try:
        del comm
        assert freed() is None
    finally:
        gc.enable()
    assert prx.communicator is None and indirect.communicator is None
    with pytest.raises(aiocomm.CommunicatorDestroyedError):
        prx.invoke("echo")
