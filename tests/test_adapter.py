"""Object adapters: endpoints, the servant map, default servants, facets, activation,
deactivation and destroy."""

from __future__ import annotations

import asyncio
import socket

import pytest

import aiocomm


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


class Named:
    """Answers ``who`` with its name and the identity it was called as."""

    def __init__(self, name: str) -> None:
        self.name = name

    def who(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return f"{self.name}:{current.identity}:{current.facet}".encode()


def _port(endpoint: str) -> int:
    tokens = endpoint.split()
    return int(tokens[tokens.index("-p") + 1])


async def _wait_for(predicate, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


# ------------------------------------------------------------- endpoints


async def test_ephemeral_port_is_published(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    [endpoint] = adapter.endpoints
    port = _port(endpoint)
    assert endpoint == f"tcp -h 127.0.0.1 -p {port}"
    assert port > 0
    proxy = adapter.add(Echo(), "echo")
    assert proxy.endpoints == (endpoint,)
    assert str(proxy) == f"echo -t -e 1.1:{endpoint}"
    # The port is really listening.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    adapter.activate()
    assert await proxy.invoke("echo", b"abc") == b"abc"


async def test_default_endpoints_argument(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    [endpoint] = adapter.endpoints
    assert endpoint.startswith("tcp -h 127.0.0.1 -p ")
    assert _port(endpoint) > 0


async def test_several_endpoints(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0:tcp -h 127.0.0.1 -p 0")
    assert len(adapter.endpoints) == 2
    ports = [_port(e) for e in adapter.endpoints]
    assert len(set(ports)) == 2 and all(p > 0 for p in ports)
    proxy = adapter.add(Echo(), "echo")
    assert proxy.endpoints == tuple(adapter.endpoints)
    adapter.activate()
    # Each endpoint serves on its own.
    client = aiocomm.Communicator()
    try:
        for endpoint in adapter.endpoints:
            single = client.proxy(f"echo:{endpoint}")
            assert await single.invoke("echo", endpoint.encode()) == endpoint.encode()
        assert client.stats()["connections"] == 2
    finally:
        await client.destroy()


async def test_port_in_use_fails(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    port = _port(adapter.endpoints[0])
    with pytest.raises(OSError):
        comm.create_object_adapter(f"tcp -h 127.0.0.1 -p {port}")


async def test_bad_endpoints_argument(comm: aiocomm.Communicator) -> None:
    with pytest.raises(aiocomm.ProxyParseError):
        comm.create_object_adapter("udp -h 127.0.0.1 -p 0")
    with pytest.raises(TypeError):
        comm.create_object_adapter(1234)  # type: ignore[arg-type]


async def test_wildcard_host_is_published_as_loopback(comm: aiocomm.Communicator) -> None:
    for wildcard in ("*", "0.0.0.0"):
        adapter = comm.create_object_adapter(f"tcp -h {wildcard} -p 0")
        [endpoint] = adapter.endpoints
        assert endpoint == f"tcp -h 127.0.0.1 -p {_port(endpoint)}"
        proxy = adapter.add(Echo(), "echo")
        adapter.activate()
        assert await proxy.invoke("echo", b"w") == b"w"


async def test_published_endpoints_go_into_proxies(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter(
        "tcp -h 0.0.0.0 -p 0",
        published_endpoints="tcp -h localhost -p 0 -t 5000:tcp -h gateway.example -p 4061")
    first, second = adapter.endpoints
    port = _port(first)
    # -p 0 stands for the port the adapter bound; a given port is kept, as
    # for a server reached through a forwarded port.
    assert port > 0
    assert first == f"tcp -h localhost -p {port} -t 5000"
    assert second == "tcp -h gateway.example -p 4061"
    proxy = adapter.add(Echo(), "echo")
    assert proxy.endpoints == (first, second)
    assert str(proxy) == f"echo -t -e 1.1:{first}:{second}"
    adapter.activate()
    # The published host reaches the wildcard-bound adapter.
    client = aiocomm.Communicator()
    try:
        assert await client.proxy(f"echo:{first}").invoke("echo", b"p") == b"p"
    finally:
        await client.destroy()


async def test_bad_published_endpoints(comm: aiocomm.Communicator) -> None:
    for unreachable in ("tcp -h * -p 0", "tcp -h 0.0.0.0 -p 4061", "tcp -p 0"):
        with pytest.raises(aiocomm.ProxyParseError, match="host clients can reach"):
            comm.create_object_adapter(published_endpoints=unreachable)
    with pytest.raises(aiocomm.ProxyParseError):
        comm.create_object_adapter(published_endpoints="")
    with pytest.raises(TypeError, match="published_endpoints must be a str"):
        comm.create_object_adapter(published_endpoints=4061)  # type: ignore[arg-type]


# ------------------------------------------------------------ servant map


async def test_add_remove_find(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    servant = Named("a")
    proxy = adapter.add(servant, "obj")
    assert isinstance(proxy, aiocomm.Proxy)
    assert proxy.identity == aiocomm.Identity("obj", "")
    assert adapter.find("obj") is servant
    assert adapter.find(aiocomm.Identity("obj")) is servant
    assert adapter.find("other") is None
    assert await proxy.invoke("who") == b"a:obj:"

    assert adapter.remove("obj") is servant
    assert adapter.find("obj") is None
    with pytest.raises(aiocomm.ObjectNotExistError) as info:
        await proxy.invoke("who")
    assert info.value.status == 2
    assert info.value.identity == aiocomm.Identity("obj", "")

    # Registering again after removal works.
    adapter.add(Named("b"), "obj")
    assert await proxy.invoke("who") == b"b:obj:"


async def test_category_identity(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    proxy = adapter.add(Named("c"), "cat/obj")
    assert proxy.identity == aiocomm.Identity("obj", "cat")
    assert adapter.find(aiocomm.Identity("obj", "cat")) is not None
    assert adapter.find("obj") is None
    assert await proxy.invoke("who") == b"c:cat/obj:"


async def test_already_registered(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    first = Named("first")
    adapter.add(first, "obj")
    with pytest.raises(aiocomm.AlreadyRegisteredError):
        adapter.add(Named("second"), "obj")
    assert adapter.find("obj") is first
    adapter.add_default_servant(Named("d"), "cat")
    with pytest.raises(aiocomm.AlreadyRegisteredError):
        adapter.add_default_servant(Named("e"), "cat")
    assert issubclass(aiocomm.AlreadyRegisteredError, aiocomm.AiocommError)


async def test_not_registered(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    with pytest.raises(aiocomm.NotRegisteredError):
        adapter.remove("nobody")
    adapter.add(Named("x"), "obj")
    adapter.remove("obj")
    with pytest.raises(aiocomm.NotRegisteredError):
        adapter.remove("obj")
    with pytest.raises(aiocomm.NotRegisteredError):
        adapter.remove_default_servant("cat")
    assert issubclass(aiocomm.NotRegisteredError, aiocomm.AiocommError)


async def test_add_none_servant_is_type_error(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    with pytest.raises(TypeError):
        adapter.add(None, "obj")
    with pytest.raises(TypeError):
        adapter.add(Echo(), 42)  # type: ignore[arg-type]


# --------------------------------------------------------- default servants


async def test_default_servant_by_category(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    adapter.add_default_servant(Named("default-cat"), "cat")
    adapter.add(Named("own"), "cat/special")
    assert await adapter.create_proxy("cat/any").invoke("who") == b"default-cat:cat/any:"
    assert await adapter.create_proxy("cat/other").invoke("who") == b"default-cat:cat/other:"
    # A servant of its own takes precedence over the default servant.
    assert await adapter.create_proxy("cat/special").invoke("who") == b"own:cat/special:"
    # Another category has no servant.
    with pytest.raises(aiocomm.ObjectNotExistError):
        await adapter.create_proxy("dog/any").invoke("who")
    with pytest.raises(aiocomm.ObjectNotExistError):
        await adapter.create_proxy("plain").invoke("who")
    assert adapter.find_default_servant("cat") is not None


async def test_default_servant_catch_all(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    adapter.add_default_servant(Named("all"))
    adapter.add_default_servant(Named("cat"), "cat")
    assert await adapter.create_proxy("x").invoke("who") == b"all:x:"
    assert await adapter.create_proxy("dog/y").invoke("who") == b"all:dog/y:"
    # The category's own default servant wins over the catch-all.
    assert await adapter.create_proxy("cat/z").invoke("who") == b"cat:cat/z:"
    removed = adapter.remove_default_servant("")
    assert isinstance(removed, Named) and removed.name == "all"
    with pytest.raises(aiocomm.ObjectNotExistError):
        await adapter.create_proxy("x").invoke("who")


# ------------------------------------------------------------------ facets


async def test_facets(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    adapter.add(Named("main"), "obj")
    facet_proxy = adapter.add(Named("fac"), "obj", facet="f1")
    assert facet_proxy.facet == "f1"
    assert "-f f1" in str(facet_proxy)
    assert adapter.find("obj", "f1") is not None
    main = adapter.create_proxy("obj")
    assert await main.invoke("who") == b"main:obj:"
    assert await facet_proxy.invoke("who") == b"fac:obj:f1"
    assert await main.with_facet("f1").invoke("who") == b"fac:obj:f1"
    with pytest.raises(aiocomm.FacetNotExistError) as info:
        await main.with_facet("nope").invoke("who")
    assert info.value.status == 3
    assert isinstance(info.value, aiocomm.DispatchError)
    assert info.value.facet == "nope"
    assert info.value.operation == "who"
    # Removing the facet removes only the facet.
    adapter.remove("obj", "f1")
    with pytest.raises(aiocomm.FacetNotExistError):
        await facet_proxy.invoke("who")
    assert await main.invoke("who") == b"main:obj:"


async def test_facet_proxy_parsed_from_string(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    adapter.add(Named("main"), "obj")
    adapter.add(Named("fac"), "obj", facet="admin")
    proxy = comm.proxy(f"obj -f admin:{adapter.endpoints[0]}")
    assert await proxy.invoke("who") == b"fac:obj:admin"


# ------------------------------------------------------------- create_proxy


async def test_create_proxy(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0:tcp -h 127.0.0.1 -p 0")
    proxy = adapter.create_proxy("cat/name")
    assert proxy.identity == aiocomm.Identity("name", "cat")
    assert proxy.facet == ""
    assert proxy.endpoints == tuple(adapter.endpoints)
    assert not proxy.is_oneway
    # A proxy for an identity not (yet) registered: object does not exist,
    # until a servant is added.
    adapter.activate()
    with pytest.raises(aiocomm.ObjectNotExistError):
        await proxy.ping()
    adapter.add(Named("n"), "cat/name")
    await proxy.ping()
    assert adapter.create_proxy(aiocomm.Identity("name", "cat")) == proxy


# --------------------------------------------------------------- activation


async def test_requests_held_until_activate(comm: aiocomm.Communicator) -> None:
    server = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        calls: list[bytes] = []

        class Recorder:
            def op(self, payload: bytes, current: aiocomm.Current) -> bytes:
                calls.append(payload)
                return b"done:" + payload

        adapter.add(Recorder(), "rec")
        assert not adapter.is_active
        proxy = comm.proxy(f"rec:{adapter.endpoints[0]}")
        call = asyncio.ensure_future(proxy.invoke("op", b"early"))
        await asyncio.sleep(0.3)
        assert not call.done(), "a request was dispatched before activate()"
        assert calls == []
        adapter.activate()
        assert adapter.is_active
        assert await asyncio.wait_for(call, 2) == b"done:early"
        assert calls == [b"early"]
        assert await proxy.invoke("op", b"late") == b"done:late"
    finally:
        await server.destroy()


async def test_activate_is_idempotent(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    proxy = adapter.add(Echo(), "e")
    adapter.activate()
    adapter.activate()
    assert await proxy.invoke("echo", b"x") == b"x"


# ------------------------------------------------------------- deactivation


async def test_deactivate_waits_for_inflight_async_dispatch(comm: aiocomm.Communicator) -> None:
    server = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        started = asyncio.Event()
        finished: list[str] = []

        class Slow:
            async def slow(self, payload: bytes, current: aiocomm.Current) -> bytes:
                started.set()
                await asyncio.sleep(0.3)
                finished.append("slow")
                return b"slow-done"

        adapter.add(Slow(), "slow")
        adapter.activate()
        endpoint = adapter.endpoints[0]
        proxy = comm.proxy(f"slow:{endpoint}")
        call = asyncio.ensure_future(proxy.invoke("slow"))
        await asyncio.wait_for(started.wait(), 2)

        deactivated = adapter.deactivate()
        assert adapter.is_deactivated
        assert not adapter.is_active
        await asyncio.wait_for(deactivated, 3)
        # deactivate() completed only once the dispatch had finished...
        assert finished == ["slow"]
        # ...and its reply reached the caller.
        assert await asyncio.wait_for(call, 2) == b"slow-done"

        # New connections are refused once deactivated.
        with socket.socket() as raw:
            raw.settimeout(2)
            with pytest.raises(OSError):
                raw.connect(("127.0.0.1", _port(endpoint)))
        fresh = aiocomm.Communicator()
        try:
            with pytest.raises(aiocomm.ConnectionRefusedError):
                await asyncio.wait_for(fresh.proxy(f"slow:{endpoint}").invoke("slow"), 5)
        finally:
            await fresh.destroy()
        # Idempotent.
        await asyncio.wait_for(adapter.deactivate(), 2)
    finally:
        await server.destroy()


async def test_deactivate_idle_adapter_completes_at_once(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    adapter.activate()
    await asyncio.wait_for(adapter.deactivate(), 1)
    assert adapter.is_deactivated


async def test_deactivate_refuses_held_requests(comm: aiocomm.Communicator) -> None:
    server = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        adapter.add(Echo(), "e")
        proxy = comm.proxy(f"e:{adapter.endpoints[0]}")
        call = asyncio.ensure_future(proxy.invoke("echo", b"x"))
        await asyncio.sleep(0.2)
        assert not call.done()
        await asyncio.wait_for(adapter.deactivate(), 2)
        # The held request was never dispatched: the caller gets an error, not a hang.
        with pytest.raises(aiocomm.AiocommError):
            await asyncio.wait_for(call, 3)
    finally:
        await server.destroy()


async def test_destroy_forgets_servants(comm: aiocomm.Communicator) -> None:
    server = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        adapter.add(Echo(), "e")
        adapter.add_default_servant(Echo(), "cat")
        adapter.activate()
        endpoint = adapter.endpoints[0]
        assert await comm.proxy(f"e:{endpoint}").invoke("echo", b"1") == b"1"
        await asyncio.wait_for(adapter.destroy(), 3)
        assert adapter.is_deactivated
        assert adapter.find("e") is None
        assert adapter.find_default_servant("cat") is None
        with pytest.raises(aiocomm.ConnectionRefusedError):
            await asyncio.wait_for(comm.proxy(f"e:{endpoint}").invoke("echo"), 5)
    finally:
        await server.destroy()


async def test_two_adapters_one_communicator(comm: aiocomm.Communicator) -> None:
    first = comm.create_object_adapter(name="first")
    second = comm.create_object_adapter(name="second")
    assert first.name == "first" and second.name == "second"
    assert first.endpoints != second.endpoints
    p1 = first.add(Named("one"), "obj")
    p2 = second.add(Named("two"), "obj")
    first.activate()
    second.activate()
    assert await p1.invoke("who") == b"one:obj:"
    assert await p2.invoke("who") == b"two:obj:"
    await first.deactivate()
    assert await p2.invoke("who") == b"two:obj:"


async def test_port_refuses_as_soon_as_deactivate_returns(comm: aiocomm.Communicator) -> None:
    # Once deactivate() has completed, the listening socket is closed: a new
    # connection is refused, never accepted and then reset.
    for _ in range(10):
        adapter = comm.create_object_adapter()
        adapter.activate()
        port = _port(adapter.endpoints[0])
        await asyncio.wait_for(adapter.deactivate(), 2)
        with socket.socket() as raw:
            raw.settimeout(2)
            try:
                raw.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                continue
            except OSError as e:
                raise AssertionError(f"connect after deactivate: {e!r}, not refused") from e
            raise AssertionError("a connection was accepted after deactivate() returned")


async def test_call_after_graceful_deactivate_is_refused(comm: aiocomm.Communicator) -> None:
    # The server closed gracefully (close-connection): a call made afterwards was
    # never dispatched, goes to a new connection, and is refused there.
    server = aiocomm.Communicator()
    try:
        for _ in range(10):
            adapter = server.create_object_adapter()
            adapter.add(Echo(), "e")
            adapter.activate()
            proxy = comm.proxy(f"e:{adapter.endpoints[0]}")
            assert await proxy.invoke("echo", b"1") == b"1"
            await asyncio.wait_for(adapter.deactivate(), 2)
            with pytest.raises(aiocomm.ConnectionRefusedError):
                await asyncio.wait_for(proxy.invoke("echo", b"2"), 5)
    finally:
        await server.destroy()
