"""Indirect and well-known proxies, the locator cache, and adapter registration,
against a locator written with aiocomm itself (no IceGrid needed: see
``tests/interop/test_icegrid.py`` for the real registry)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiocomm
import aiocomm.slice

Ice = aiocomm.slice.load(Path(aiocomm.__file__).parent / "_locator.ice").Ice


class FakeLocator(Ice.Locator):  # type: ignore[misc,name-defined]
    """Answers from two dicts and counts the questions."""

    def __init__(self) -> None:
        self.adapters: dict[str, aiocomm.Proxy] = {}
        self.objects: dict[aiocomm.Identity, aiocomm.Proxy] = {}
        self.asked: list[str] = []
        self.registry: aiocomm.Proxy | None = None
        self.hang = False
        self.release = asyncio.Event()

    async def findAdapterById(self, id: str, current: aiocomm.Current) -> aiocomm.Proxy | None:
        self.asked.append(id)
        if self.hang:
            await self.release.wait()
        if id == "Null":
            return None
        if id not in self.adapters:
            raise Ice.AdapterNotFoundException()
        return self.adapters[id]

    def findObjectById(self, id: Any, current: aiocomm.Current) -> aiocomm.Proxy | None:
        identity = aiocomm.Identity(id.name, id.category)
        self.asked.append(str(identity))
        if identity not in self.objects:
            raise Ice.ObjectNotFoundException()
        return self.objects[identity]

    def getRegistry(self, current: aiocomm.Current) -> aiocomm.Proxy | None:
        return self.registry


class FakeRegistry(Ice.LocatorRegistry):  # type: ignore[misc,name-defined]
    def __init__(self, locator: FakeLocator) -> None:
        self.locator = locator
        self.groups: dict[str, str] = {}

    def setAdapterDirectProxy(self, id: str, proxy: aiocomm.Proxy | None,
                              current: aiocomm.Current) -> None:
        if id == "Taken":
            raise Ice.AdapterAlreadyActiveException()
        if id == "Refused":
            raise Ice.AdapterNotFoundException()
        if proxy is None:
            self.locator.adapters.pop(id, None)
        else:
            self.locator.adapters[id] = proxy

    def setReplicatedAdapterDirectProxy(self, adapter_id: str, group: str,
                                        proxy: aiocomm.Proxy | None,
                                        current: aiocomm.Current) -> None:
        if group == "Closed":
            raise Ice.InvalidReplicaGroupIdException()
        self.groups[adapter_id] = group
        self.setAdapterDirectProxy(adapter_id, proxy, current)

    def setServerProcessProxy(self, id: str, proxy: aiocomm.Proxy | None,
                              current: aiocomm.Current) -> None:
        raise Ice.ServerNotFoundException()


class Who:
    def __init__(self, name: str) -> None:
        self.name = name

    def whoami(self, payload: bytes, current: aiocomm.Current) -> bytes:
        data = self.name.encode()
        return bytes((len(data),)) + data


async def whoami(proxy: aiocomm.Proxy) -> str:
    data = await proxy.invoke("whoami")
    return bytes(data[1:]).decode()


class Grid:
    def __init__(self, comm: aiocomm.Communicator, locator: FakeLocator,
                 proxy: aiocomm.Proxy) -> None:
        self.comm = comm
        self.locator = locator
        self.proxy = proxy

    def server(self, name: str) -> tuple[aiocomm.ObjectAdapter, aiocomm.Proxy]:
        """An adapter serving Who(name) as "hello", and its direct proxy."""
        adapter = self.comm.create_object_adapter()
        proxy = adapter.add(Who(name), "hello")
        adapter.activate()
        return adapter, proxy


@pytest.fixture
async def grid(comm: aiocomm.Communicator) -> AsyncIterator[Grid]:
    locator = FakeLocator()
    adapter = comm.create_object_adapter()
    proxy = adapter.add(locator, "IceGrid/Locator")
    locator.registry = adapter.add(FakeRegistry(locator), "IceGrid/LocatorRegistry")
    adapter.activate()
    yield Grid(comm, locator, proxy)


def client(grid: Grid, **options: Any) -> aiocomm.Communicator:
    options.setdefault("invocation_timeout", 20.0)
    return aiocomm.Communicator(locator=str(grid.proxy), **options)


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# ------------------------------------------------------------------ strings


@pytest.mark.parametrize(("text", "adapter_id", "printed"), [
    ("hello@HelloAdapter", "HelloAdapter", "hello -t -e 1.1 @ HelloAdapter"),
    ("hello @ HelloAdapter", "HelloAdapter", "hello -t -e 1.1 @ HelloAdapter"),
    ('hello -o @ "my adapter"', "my adapter", 'hello -o -e 1.1 @ "my adapter"'),
    ("cat/hello -f f @ A.B", "A.B", "cat/hello -f f -t -e 1.1 @ A.B"),
    ("hello", "", "hello -t -e 1.1"),
    ("cat/hello -f f -o", "", "cat/hello -f f -o -e 1.1"),
])
async def test_indirect_and_well_known_strings(comm: aiocomm.Communicator, text: str,
                                               adapter_id: str, printed: str) -> None:
    proxy = comm.proxy(text)
    assert proxy.adapter_id == adapter_id
    assert proxy.endpoints == ()
    assert str(proxy) == printed
    assert comm.proxy(str(proxy)) == proxy
    assert comm.proxy("hello:tcp -h 127.0.0.1 -p 1").adapter_id is None


async def test_no_locator_is_a_typed_error(comm: aiocomm.Communicator) -> None:
    with pytest.raises(aiocomm.NotRegisteredError, match="no locator"):
        await comm.proxy("hello@A").ping()
    assert comm.locator is None and comm.proxy("hello@A").locator is None


# --------------------------------------------------------------- resolution


async def test_resolves_by_adapter_id_and_caches(grid: Grid) -> None:
    _, direct = grid.server("one")
    grid.locator.adapters["A"] = direct
    async with client(grid) as comm:
        proxy = comm.proxy("hello@A")
        assert str(proxy.locator) == str(grid.proxy)
        assert [await whoami(proxy) for _ in range(3)] == ["one"] * 3
        assert await whoami(comm.proxy("hello@A")) == "one"
        assert grid.locator.asked == ["A"]  # -1: cached until it fails


async def test_cache_timeout_zero_asks_every_time(grid: Grid) -> None:
    _, direct = grid.server("one")
    grid.locator.adapters["A"] = direct
    async with client(grid, locator_cache_timeout=0) as comm:
        for _ in range(3):
            assert await whoami(comm.proxy("hello@A")) == "one"
        assert grid.locator.asked == ["A"] * 3


async def test_cache_entry_expires(grid: Grid) -> None:
    _, direct = grid.server("one")
    grid.locator.adapters["A"] = direct
    async with client(grid, locator_cache_timeout=2.0) as comm:
        proxy = comm.proxy("hello@A")
        await whoami(proxy)
        await whoami(proxy)
        assert grid.locator.asked == ["A"]
        await asyncio.sleep(2.5)
        await whoami(proxy)
        assert grid.locator.asked == ["A", "A"]


async def test_concurrent_calls_share_one_lookup(grid: Grid) -> None:
    _, direct = grid.server("one")
    grid.locator.adapters["A"] = direct
    async with client(grid) as comm:
        proxy = comm.proxy("hello@A")
        assert await asyncio.gather(*(whoami(proxy) for _ in range(20))) == ["one"] * 20
        assert grid.locator.asked == ["A"]


async def test_stale_entry_is_dropped_and_the_locator_asked_once_more(grid: Grid) -> None:
    old, old_direct = grid.server("old")
    grid.locator.adapters["A"] = old_direct
    async with client(grid) as comm:
        proxy = comm.proxy("hello@A")
        assert await whoami(proxy) == "old"
        await old.deactivate()  # its port closes: the cached endpoints are stale
        _, new_direct = grid.server("new")
        grid.locator.adapters["A"] = new_direct
        assert await whoami(proxy) == "new"
        assert grid.locator.asked == ["A", "A"]


async def test_fresh_answer_that_fails_is_not_retried(grid: Grid, closed_port: int) -> None:
    grid.locator.adapters["A"] = grid.comm.proxy(f"hello:tcp -h 127.0.0.1 -p {closed_port}")
    async with client(grid) as comm:
        with pytest.raises(aiocomm.ConnectionRefusedError):
            await comm.proxy("hello@A").ping()
        assert grid.locator.asked == ["A"]
        # The failure dropped what was resolved: the next call asks again.
        with pytest.raises(aiocomm.ConnectionRefusedError):
            await comm.proxy("hello@A").ping()
        assert grid.locator.asked == ["A", "A"]


async def test_well_known_object_through_an_adapter(grid: Grid) -> None:
    adapter, direct = grid.server("known")
    grid.locator.adapters["A"] = direct
    grid.locator.objects[aiocomm.Identity("hello")] = grid.comm.proxy("hello@A")
    grid.locator.objects[aiocomm.Identity("direct")] = adapter.add(Who("direct"), "direct")
    async with client(grid) as comm:
        assert await whoami(comm.proxy("hello")) == "known"
        assert await whoami(comm.proxy("direct")) == "direct"
        assert await whoami(comm.proxy("hello")) == "known"
        assert grid.locator.asked == ["hello", "A", "direct"]


async def test_unknown_adapter_and_object(grid: Grid) -> None:
    async with client(grid) as comm:
        for text in ("hello@Nowhere", "hello@Null", "nobody"):
            with pytest.raises(aiocomm.NotRegisteredError) as info:
                await comm.proxy(text).ping()
            assert isinstance(info.value, aiocomm.AiocommError)
            assert isinstance(info.value, KeyError)


async def test_with_locator(grid: Grid) -> None:
    _, direct = grid.server("one")
    grid.locator.adapters["A"] = direct
    async with aiocomm.Communicator(invocation_timeout=20.0) as comm:
        proxy = comm.proxy("hello@A")
        assert await whoami(proxy.with_locator(str(grid.proxy))) == "one"
        assert await whoami(proxy.with_locator(comm.proxy(str(grid.proxy)))) == "one"
        assert proxy.with_locator(str(grid.proxy)).locator == comm.proxy(str(grid.proxy))
        with pytest.raises(aiocomm.NotRegisteredError):
            await proxy.with_locator(None).ping()
        with pytest.raises(aiocomm.ProxyParseError):
            proxy.with_locator("IceGrid/Locator@Elsewhere")
        with pytest.raises(TypeError):
            proxy.with_locator(42)


async def test_unreachable_locator_is_a_connection_error(closed_port: int) -> None:
    async with aiocomm.Communicator(
            locator=f"IceGrid/Locator:tcp -h 127.0.0.1 -p {closed_port}",
            invocation_timeout=20.0) as comm:
        with pytest.raises(aiocomm.LocatorUnreachableError) as info:
            await comm.proxy("hello@A").ping()
        assert isinstance(info.value, ConnectionError)


async def test_silent_locator_is_bounded_by_the_invocation_timeout() -> None:
    # Listens (the kernel completes connections) and never says a word: no
    # Ice connection validation, no reply.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        async with aiocomm.Communicator(locator=f"IceGrid/Locator:tcp -h 127.0.0.1 -p {port}",
                                        invocation_timeout=1.0,
                                        connect_timeout=30.0) as comm:
            started = time.monotonic()
            with pytest.raises(aiocomm.LocatorUnreachableError) as info:
                await comm.proxy("hello@A").ping()
            assert time.monotonic() - started < 15.0
            assert isinstance(info.value, TimeoutError)
            assert isinstance(info.value, ConnectionError)


async def test_hung_locator_without_invocation_timeout(grid: Grid) -> None:
    grid.locator.hang = True
    async with client(grid, invocation_timeout=None, connect_timeout=1.0) as comm:
        started = time.monotonic()
        try:
            with pytest.raises(aiocomm.LocatorTimeoutError):
                await comm.proxy("hello@A").ping()
            assert time.monotonic() - started < 15.0
        finally:
            grid.locator.release.set()


# ------------------------------------------------------------- registration


async def test_plain_activate_returns_a_done_future(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    registration = adapter.activate()
    assert registration.done() and registration.result() is None
    assert adapter.activate() is registration
    assert await registration is None


async def test_adapter_registers_and_unregisters(grid: Grid) -> None:
    async with client(grid) as server, client(grid) as caller:
        adapter = server.create_object_adapter(adapter_id="Reg")
        made = adapter.add(Who("registered"), "hello")
        assert str(made) == "hello -t -e 1.1 @ Reg"
        assert adapter.adapter_id == "Reg" and adapter.replica_group_id is None
        await adapter.activate()
        assert grid.locator.adapters["Reg"].endpoints == tuple(adapter.endpoints)
        assert await whoami(caller.proxy("hello@Reg")) == "registered"
        await adapter.deactivate()
        assert "Reg" not in grid.locator.adapters


async def test_deactivate_while_registering(grid: Grid) -> None:
    async with client(grid) as server:
        adapter = server.create_object_adapter(adapter_id="Brief")
        registering = adapter.activate()
        assert not registering.done()
        await adapter.deactivate()  # waits for the registration, then takes it back
        assert registering.done() and registering.result() is None
        assert "Brief" not in grid.locator.adapters


async def test_destroy_clears_the_registration(grid: Grid) -> None:
    server = client(grid)
    for i in range(2):
        adapter = server.create_object_adapter(adapter_id=f"Gone{i}", replica_group_id="G")
        adapter.add(Who("gone"), "hello")
        await adapter.activate()
    assert {"Gone0", "Gone1"} <= set(grid.locator.adapters)
    first, second = server.destroy(), server.destroy()  # concurrent callers, both wait
    await first
    await second
    assert server.is_destroyed
    assert not {"Gone0", "Gone1"} & set(grid.locator.adapters)


async def test_replica_registers_into_its_group(grid: Grid) -> None:
    async with client(grid) as server:
        adapter = server.create_object_adapter(adapter_id="R1", replica_group_id="G")
        assert str(adapter.add(Who("r1"), "hello")) == "hello -t -e 1.1 @ G"
        await adapter.activate()
        assert grid.locator.registry is not None
        assert "R1" in grid.locator.adapters


@pytest.mark.parametrize(("adapter_id", "group", "error"), [
    ("Taken", None, aiocomm.AdapterAlreadyActiveError),
    ("Refused", None, aiocomm.AdapterNotFoundError),
    ("R2", "Closed", aiocomm.InvalidReplicaGroupError),
])
async def test_registry_refusals_are_typed(grid: Grid, adapter_id: str, group: str | None,
                                           error: type[Exception]) -> None:
    async with client(grid) as server:
        adapter = server.create_object_adapter(adapter_id=adapter_id, replica_group_id=group)
        adapter.add(Who("x"), "hello")
        registration = adapter.activate()
        assert adapter.is_active
        with pytest.raises(error) as info:
            await registration
        assert isinstance(info.value, aiocomm.RegistrationError)
        assert await whoami(adapter.create_direct_proxy("hello")) == "x"


async def test_registry_missing(grid: Grid) -> None:
    grid.locator.registry = None
    async with client(grid) as server:
        with pytest.raises(aiocomm.RegistrationError, match="no registry"):
            await server.create_object_adapter(adapter_id="A").activate()


async def test_unreachable_locator_fails_registration(closed_port: int) -> None:
    async with aiocomm.Communicator(
            locator=f"IceGrid/Locator:tcp -h 127.0.0.1 -p {closed_port}") as comm:
        adapter = comm.create_object_adapter(adapter_id="A")
        with pytest.raises(aiocomm.LocatorUnreachableError):
            await adapter.activate()


async def test_adapter_options_are_checked(comm: aiocomm.Communicator) -> None:
    with pytest.raises(ValueError, match="locator"):
        comm.create_object_adapter(adapter_id="A")
    with pytest.raises(ValueError, match="adapter_id"):
        comm.create_object_adapter(replica_group_id="G")
    with pytest.raises(TypeError):
        comm.create_object_adapter(adapter_id="")
    with pytest.raises(ValueError):
        aiocomm.Communicator(locator_cache_timeout=-2)
    with pytest.raises(TypeError):
        aiocomm.Communicator(locator_cache_timeout="1")


# ---------------------------------------------------------------- replicas


class Replica:
    """Answers ``whoami``; ``block`` holds the first request any replica gets
    (until ``release``) and answers the others at once."""

    def __init__(self, name: str, started: list[str], release: asyncio.Event) -> None:
        self.name = name
        self.started = started
        self.release = release

    def whoami(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return Who(self.name).whoami(payload, current)

    async def block(self, payload: bytes, current: aiocomm.Current) -> bytes:
        if not self.started:
            self.started.append(self.name)
            await self.release.wait()
        return self.whoami(payload, current)


class Replicas:
    def __init__(self, grid: Grid, server: aiocomm.Communicator, count: int) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()
        self.adapters: dict[str, aiocomm.ObjectAdapter] = {}
        endpoints = []
        for i in range(count):
            name = f"replica-{i}"
            adapter = server.create_object_adapter()
            adapter.add(Replica(name, self.started, self.release), "hello")
            adapter.activate()
            self.adapters[name] = adapter
            endpoints += adapter.endpoints
        # What a registry answers for a group: every replica's endpoints.
        grid.locator.adapters["G"] = server.proxy("hello:" + ":".join(endpoints))


@pytest.fixture
async def replica_server() -> AsyncIterator[aiocomm.Communicator]:
    # A dispatch still running 1 s after its adapter is deactivated is
    # abandoned and its connection aborted: how a replica "dies" here.
    server = aiocomm.Communicator(close_timeout=1.0)
    try:
        yield server
    finally:
        await server.destroy()


async def test_group_proxy_gets_every_replica_in_order(grid: Grid,
                                                       replica_server: aiocomm.Communicator
                                                       ) -> None:
    replicas = Replicas(grid, replica_server, 3)
    async with client(grid) as comm:
        proxy = comm.proxy("hello@G")
        # One connection per proxy by default: the first replica serves it all.
        assert {await whoami(proxy) for _ in range(6)} == {"replica-0"}
        balanced = proxy.with_connection_cached(False)
        assert not balanced.is_connection_cached and proxy.is_connection_cached
        assert [await whoami(balanced) for _ in range(6)] == [
            "replica-0", "replica-1", "replica-2"] * 2
        assert grid.locator.asked == ["G"]
        del replicas


async def test_dead_replica_new_calls_go_to_the_living(grid: Grid,
                                                       replica_server: aiocomm.Communicator
                                                       ) -> None:
    replicas = Replicas(grid, replica_server, 3)
    async with client(grid) as comm:
        proxy = comm.proxy("hello@G")
        assert await whoami(proxy) == "replica-0"
        await replicas.adapters["replica-0"].deactivate()
        assert [await whoami(proxy) for _ in range(3)] == ["replica-1"] * 3
        await replicas.adapters["replica-1"].deactivate()
        assert await whoami(proxy.with_connection_cached(False)) == "replica-2"


@pytest.mark.parametrize("idempotent", [True, False])
async def test_call_in_flight_when_its_replica_dies(grid: Grid,
                                                    replica_server: aiocomm.Communicator,
                                                    idempotent: bool) -> None:
    replicas = Replicas(grid, replica_server, 2)
    async with client(grid) as comm:
        proxy = comm.proxy("hello@G")
        call = asyncio.ensure_future(proxy.invoke("block", idempotent=idempotent))
        while not replicas.started:
            await asyncio.sleep(0.01)
        assert replicas.started == ["replica-0"]
        try:
            await replicas.adapters["replica-0"].deactivate()  # aborted after 1 s
            if idempotent:  # retried on the next replica
                assert bytes((await call)[1:]).decode() == "replica-1"
            else:  # may have run: not retried, a typed error
                with pytest.raises(aiocomm.ConnectionLostError):
                    await call
        finally:
            replicas.release.set()
        assert await whoami(proxy) == "replica-1"


async def test_cancelling_indirect_calls(grid: Grid) -> None:
    grid.locator.hang = True
    async with client(grid) as comm:
        try:
            waiting = comm.proxy("hello@A").invoke("whoami")  # the locator never answers
            await asyncio.sleep(0.2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        finally:
            grid.locator.release.set()
        # The lookup went on for others: it answers now (NotRegistered: no "A").
        with pytest.raises(aiocomm.NotRegisteredError):
            await comm.proxy("hello@A").ping()
        _, direct = grid.server("one")
        grid.locator.adapters["B"] = direct
        proxy = comm.proxy("hello@B")
        assert await whoami(proxy) == "one"
        cached = proxy.invoke("whoami")  # resolved from the cache: the fast path
        cached.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cached
        assert await whoami(proxy) == "one"
