"""Proxies: the stringified syntax, immutable copies, contexts, modes, timeouts,
connection management (sharing, reconnection, retry) and argument checking."""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aiocomm


class Echo:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str], aiocomm.OperationMode, int]] = []

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload

    def record(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls.append((current.operation, payload, dict(current.context), current.mode,
                           current.request_id))
        return b""

    async def sleep(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(float(payload.decode()))
        return b"slept"

    async def aecho(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0)
        return payload


class Server:
    def __init__(self, server: aiocomm.Communicator, client: aiocomm.Communicator,
                 adapter: aiocomm.ObjectAdapter, servant: Echo) -> None:
        self.server = server
        self.client = client
        self.adapter = adapter
        self.servant = servant
        self.endpoint = adapter.endpoints[0]
        self.port = int(self.endpoint.split()[-1])
        self.proxy = client.proxy(f"echo:{self.endpoint}")


@pytest.fixture
async def srv() -> AsyncIterator[Server]:
    server = aiocomm.Communicator()
    client = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        servant = Echo()
        adapter.add(servant, "echo")
        adapter.activate()
        yield Server(server, client, adapter, servant)
    finally:
        await client.destroy()
        await server.destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_for(predicate, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello:tcp -h 127.0.0.1 -p 10000", "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000"),
        ("hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000", "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000"),
        ("  hello   :  tcp  -h  127.0.0.1  -p 10000  ",
         "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000"),
        ("hello -o:tcp -h 127.0.0.1 -p 1", "hello -o -e 1.1:tcp -h 127.0.0.1 -p 1"),
        ("hello -f fac:tcp -h h -p 1", "hello -f fac -t -e 1.1:tcp -h h -p 1"),
        ("cat/name:tcp -h h -p 1", "cat/name -t -e 1.1:tcp -h h -p 1"),
        ("cat/name -f fac -o -e 1.1:tcp -h h -p 1",
         "cat/name -f fac -o -e 1.1:tcp -h h -p 1"),
        ("id:tcp -h a -p 1:tcp -h b -p 2", "id -t -e 1.1:tcp -h a -p 1:tcp -h b -p 2"),
        ("id:tcp -h a -p 1 -t 60000", "id -t -e 1.1:tcp -h a -p 1 -t 60000"),
        ("id:tcp -h a -p 1 -t 60000:tcp -h b -p 2 -t 1000",
         "id -t -e 1.1:tcp -h a -p 1 -t 60000:tcp -h b -p 2 -t 1000"),
        ("id:tcp -p 5 -h localhost", "id -t -e 1.1:tcp -h localhost -p 5"),
        ("id:tcp -h 127.0.0.1 -p 65535", "id -t -e 1.1:tcp -h 127.0.0.1 -p 65535"),
    ],
)
async def test_parse_and_format(comm: aiocomm.Communicator, text: str, expected: str) -> None:
    proxy = comm.proxy(text)
    assert str(proxy) == expected
    again = comm.proxy(str(proxy))
    assert str(again) == expected
    assert again == proxy


@pytest.mark.parametrize(
    ("text", "name", "category", "facet", "oneway", "endpoints"),
    [
        ("hello:tcp -h 127.0.0.1 -p 10000", "hello", "", "", False,
         ("tcp -h 127.0.0.1 -p 10000",)),
        ("cat/name -o:tcp -h h -p 1", "name", "cat", "", True, ("tcp -h h -p 1",)),
        ('"my obj":tcp -h h -p 1', "my obj", "", "", False, ("tcp -h h -p 1",)),
        ('"a:b@c":tcp -h h -p 1', "a:b@c", "", "", False, ("tcp -h h -p 1",)),
        ('"cat/my name":tcp -h h -p 1', "my name", "cat", "", False, ("tcp -h h -p 1",)),
        ("a\\/b:tcp -h h -p 1", "a/b", "", "", False, ("tcp -h h -p 1",)),
        ("a\\\\b:tcp -h h -p 1", "a\\b", "", "", False, ("tcp -h h -p 1",)),
        ('x -f "my facet":tcp -h h -p 1', "x", "", "my facet", False, ("tcp -h h -p 1",)),
        ("x -f f -e 1.1 -o:tcp -h h -p 1:tcp -h g -p 2", "x", "", "f", True,
         ("tcp -h h -p 1", "tcp -h g -p 2")),
        ("x:tcp -h h -p 1 -t 60000", "x", "", "", False, ("tcp -h h -p 1 -t 60000",)),
    ],
)
async def test_parse_fields_and_round_trip(comm: aiocomm.Communicator, text: str, name: str,
                                           category: str, facet: str, oneway: bool,
                                           endpoints: tuple[str, ...]) -> None:
    proxy = comm.proxy(text)
    assert proxy.identity == aiocomm.Identity(name, category)
    assert proxy.facet == facet
    assert proxy.is_oneway is oneway
    assert proxy.endpoints == endpoints
    again = comm.proxy(str(proxy))
    assert again == proxy
    assert again.identity == proxy.identity
    assert again.facet == proxy.facet
    assert again.is_oneway == proxy.is_oneway
    assert again.endpoints == proxy.endpoints


async def test_identity_with_space_is_quoted_as_ice_does(comm: aiocomm.Communicator) -> None:
    # Ice's proxy parser splits the identity at white space unless it is quoted,
    # and Ice's own proxyToString quotes an identity containing " ", ":" or "@".
    # A backslash before a space is not understood by Ice: str() must quote.
    proxy = comm.proxy('"my obj":tcp -h 127.0.0.1 -p 1')
    assert str(proxy) == '"my obj" -t -e 1.1:tcp -h 127.0.0.1 -p 1'


async def test_identity_round_trip_with_special_characters(comm: aiocomm.Communicator) -> None:
    for identity in [aiocomm.Identity("a b", "c d"), aiocomm.Identity("x:y", ""),
                     aiocomm.Identity("slash/name", "cat"), aiocomm.Identity('q"uote', ""),
                     aiocomm.Identity("back\\slash", "c/at"), aiocomm.Identity("ünï", "çødé")]:
        adapter_free = comm.proxy("x:tcp -h 127.0.0.1 -p 1").with_identity(identity)
        assert adapter_free.identity == identity
        again = comm.proxy(str(adapter_free))
        assert again.identity == identity, str(adapter_free)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello:",
        ":tcp -h h -p 1",
        "hello:udp -h h -p 1",
        "hello:ws -h h -p 1",
        "hello:tcp -h h",
        "hello:tcp -h h -p",
        "hello:tcp -h h -p abc",
        "hello:tcp -h h -p 70000",
        "hello:tcp -h h -p -1",
        "hello:tcp -h h -p 1 -t abc",
        "hello:tcp -h h -p 1 -x 3",
        "hello -x:tcp -h h -p 1",
        "hello -f:tcp -h h -p 1",
        "hello -e:tcp -h h -p 1",
        "hello -e 2.0:tcp -h h -p 1",
        "hello -s:tcp -h h -p 1",
        "hello -O:tcp -h h -p 1",
        "hello -d:tcp -h h -p 1",
        "hello@a@b",
        "hello@",
        "hello@adapter:tcp -h h -p 1",
        '"unterminated:tcp -h h -p 1',
        "a/b/c:tcp -h h -p 1",
        "cat/:tcp -h h -p 1",
    ],
)
async def test_parse_errors(comm: aiocomm.Communicator, text: str) -> None:
    with pytest.raises(aiocomm.ProxyParseError) as info:
        comm.proxy(text)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, aiocomm.AiocommError)


async def test_proxy_text_must_be_str(comm: aiocomm.Communicator) -> None:
    with pytest.raises(TypeError):
        comm.proxy(b"hello:tcp -h h -p 1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        comm.proxy(None)  # type: ignore[arg-type]


# ----------------------------------------------------------- immutability


async def test_copies_are_immutable(comm: aiocomm.Communicator) -> None:
    base = comm.proxy("hello:tcp -h 127.0.0.1 -p 1")
    context = {"k": "v"}
    with_context = base.with_context(context)
    with_timeout = base.with_timeout(2.5)
    oneway = base.oneway()
    context["k"] = "changed"
    context["new"] = "x"
    # The original is unchanged.
    assert base.context == {}
    assert base.timeout is None
    assert not base.is_oneway
    # Each copy has only its own change.
    assert with_context.context == {"k": "v"}
    assert with_context.timeout is None and not with_context.is_oneway
    assert with_timeout.timeout == 2.5
    assert with_timeout.context == {} and not with_timeout.is_oneway
    assert oneway.is_oneway and oneway.context == {} and oneway.timeout is None
    assert oneway.twoway() == base
    assert not oneway.twoway().is_oneway
    # Copies of copies carry everything.
    both = with_context.with_timeout(1.0).oneway()
    assert both.context == {"k": "v"} and both.timeout == 1.0 and both.is_oneway
    assert with_context.timeout is None
    # The context property hands out a copy.
    got = with_context.context
    got["k"] = "mutated"
    assert with_context.context == {"k": "v"}
    # Attributes cannot be assigned.
    with pytest.raises(AttributeError):
        base.identity = aiocomm.Identity("other")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        base.timeout = 3  # type: ignore[misc]
    # Identity, facet and endpoints survive every copy.
    for copy in (with_context, with_timeout, oneway, both):
        assert copy.identity == base.identity
        assert copy.endpoints == base.endpoints
        assert copy.facet == base.facet


async def test_with_timeout_validation(comm: aiocomm.Communicator) -> None:
    base = comm.proxy("hello:tcp -h 127.0.0.1 -p 1")
    for bad in (0, -1, -0.5):
        with pytest.raises(ValueError):
            base.with_timeout(bad)
    assert base.with_timeout(1).with_timeout(None).timeout is None


async def test_equality_and_hash(comm: aiocomm.Communicator) -> None:
    a = comm.proxy("hello:tcp -h 127.0.0.1 -p 10000")
    b = comm.proxy("hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != comm.proxy("hello2:tcp -h 127.0.0.1 -p 10000")
    assert a != comm.proxy("hello:tcp -h 127.0.0.1 -p 10001")
    assert a != comm.proxy("hello -f f:tcp -h 127.0.0.1 -p 10000")
    assert a != a.oneway()
    assert a != a.with_timeout(1)
    assert a != a.with_context({"k": "v"})
    assert a.with_context({"k": "v"}) == b.with_context({"k": "v"})
    assert hash(a.with_context({"k": "v"})) == hash(b.with_context({"k": "v"}))
    assert a != "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000"
    assert {a: 1}[b] == 1
    # As in Ice, connection caching and the locator are part of a proxy.
    assert a != a.with_connection_cached(False)
    assert a.with_connection_cached(False) == b.with_connection_cached(False)
    assert a.with_connection_cached(False).with_connection_cached(True) == a
    located = a.with_locator("IceGrid/Locator:tcp -h 127.0.0.1 -p 4061")
    assert a != located
    assert located == b.with_locator("IceGrid/Locator:tcp -h 127.0.0.1 -p 4061")
    assert hash(located) == hash(b.with_locator("IceGrid/Locator:tcp -h 127.0.0.1 -p 4061"))
    assert located != a.with_locator("IceGrid/Locator:tcp -h 127.0.0.1 -p 4062")


# ------------------------------------------------------------------ context


async def test_context_per_proxy_and_per_call(srv: Server) -> None:
    proxy = srv.proxy
    await proxy.invoke("record", b"none")
    await proxy.with_context({"p": "1", "shared": "proxy"}).invoke("record", b"proxy")
    await proxy.invoke("record", b"call", context={"c": "2"})
    # A per-call context replaces the proxy's (as in Ice).
    await proxy.with_context({"p": "1"}).invoke("record", b"both", context={"c": "3"})
    await proxy.invoke("record", b"unicode", context={"ключ": "значение", "": ""})
    big = {f"k{i}": "v" * i for i in range(300)}
    await proxy.invoke("record", b"big", context=big)
    contexts = {payload: context for _, payload, context, _, _ in srv.servant.calls}
    assert contexts[b"none"] == {}
    assert contexts[b"proxy"] == {"p": "1", "shared": "proxy"}
    assert contexts[b"call"] == {"c": "2"}
    assert contexts[b"both"] == {"c": "3"}
    assert contexts[b"unicode"] == {"ключ": "значение", "": ""}
    assert contexts[b"big"] == big


async def test_context_on_builtin_ping(srv: Server) -> None:
    seen: list[dict[str, str]] = []

    class Blob:
        def ice_invoke(self, payload: bytes, current: aiocomm.Current) -> bytes:
            seen.append(dict(current.context))
            return b""

    srv.adapter.add(Blob(), "blob")
    proxy = srv.client.proxy(f"blob:{srv.endpoint}").with_context({"a": "b"})
    await proxy.invoke("op")
    await proxy.ping()
    assert seen == [{"a": "b"}]


# -------------------------------------------------------------------- modes


async def test_idempotent_flag_sets_mode(srv: Server) -> None:
    await srv.proxy.invoke("record", b"n")
    await srv.proxy.invoke("record", b"i", idempotent=True)
    modes = {payload: mode for _, payload, _, mode, _ in srv.servant.calls}
    assert modes[b"n"] == aiocomm.OperationMode.NORMAL
    assert modes[b"i"] == aiocomm.OperationMode.IDEMPOTENT
    assert int(modes[b"i"]) == 2


async def test_oneway_invoke(srv: Server) -> None:
    oneway = srv.proxy.oneway()
    results = [await oneway.invoke("record", bytes([i])) for i in range(3)]
    assert results == [b"", b"", b""]
    await _wait_for(lambda: len(srv.servant.calls) == 3)
    assert [c[1] for c in srv.servant.calls] == [b"\x00", b"\x01", b"\x02"]
    assert all(c[4] == 0 for c in srv.servant.calls)
    # A oneway call to a slow operation does not wait for it.
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await oneway.invoke("sleep", b"0.5") == b""
    assert loop.time() - start < 0.4
    parsed = srv.client.proxy(f"echo -o:{srv.endpoint}")
    assert parsed.is_oneway
    assert await parsed.invoke("record", b"parsed") == b""
    await _wait_for(lambda: any(c[1] == b"parsed" for c in srv.servant.calls))


# ----------------------------------------------------------------- timeouts


async def test_invocation_timeout(srv: Server) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(aiocomm.InvocationTimeoutError) as info:
        await srv.proxy.invoke("sleep", b"1.0", timeout=0.2)
    elapsed = loop.time() - start
    assert 0.15 < elapsed < 0.8
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, aiocomm.AiocommError)
    with pytest.raises(TimeoutError):
        await srv.proxy.with_timeout(0.1).invoke("sleep", b"1.0")
    # A call within its timeout succeeds.
    assert await srv.proxy.with_timeout(2).invoke("sleep", b"0.01") == b"slept"


async def test_communicator_invocation_timeout(srv: Server) -> None:
    client = aiocomm.Communicator(invocation_timeout=0.2)
    try:
        proxy = client.proxy(f"echo:{srv.endpoint}")
        with pytest.raises(aiocomm.InvocationTimeoutError):
            await proxy.invoke("sleep", b"1.0")
        # The per-proxy timeout overrides the communicator's.
        assert await proxy.with_timeout(2).invoke("sleep", b"0.4") == b"slept"
    finally:
        await client.destroy()


async def test_late_reply_after_timeout_is_dropped(srv: Server) -> None:
    with pytest.raises(aiocomm.InvocationTimeoutError):
        await srv.proxy.invoke("sleep", b"0.3", timeout=0.1)
    connections = srv.client.stats()["connections"]
    await asyncio.sleep(0.4)  # the late reply arrives in here
    assert srv.client.stats()["pending_invocations"] == 0
    assert srv.client.stats()["outgoing_pending"] == 0
    # The connection still works, and the next reply is its own.
    assert await srv.proxy.invoke("echo", b"after") == b"after"
    results = await asyncio.gather(*(srv.proxy.invoke("echo", bytes([i])) for i in range(20)))
    assert results == [bytes([i]) for i in range(20)]
    assert srv.client.stats()["connections"] == connections


async def test_connection_refused(comm: aiocomm.Communicator) -> None:
    proxy = comm.proxy(f"nobody:tcp -h 127.0.0.1 -p {_free_port()}")
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(aiocomm.ConnectionRefusedError) as info:
        await asyncio.wait_for(proxy.invoke("op"), 5)
    assert loop.time() - start < 1.0
    assert isinstance(info.value, ConnectionRefusedError)  # the builtin
    assert isinstance(info.value, ConnectionError)
    assert isinstance(info.value, aiocomm.AiocommError)
    # Again, and through ping, and with several dead endpoints.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(proxy.ping(), 5)
    multi = comm.proxy(f"nobody:tcp -h 127.0.0.1 -p {_free_port()}"
                       f":tcp -h 127.0.0.1 -p {_free_port()}")
    with pytest.raises(aiocomm.ConnectionRefusedError):
        await asyncio.wait_for(multi.invoke("op"), 5)


async def test_oneway_connection_refused(comm: aiocomm.Communicator) -> None:
    proxy = comm.proxy(f"nobody -o:tcp -h 127.0.0.1 -p {_free_port()}")
    with pytest.raises(aiocomm.ConnectionRefusedError):
        await asyncio.wait_for(proxy.invoke("op"), 5)


async def test_second_endpoint_used_when_first_refuses(srv: Server) -> None:
    proxy = srv.client.proxy(f"echo:tcp -h 127.0.0.1 -p {_free_port()}:{srv.endpoint}")
    assert await asyncio.wait_for(proxy.invoke("echo", b"x"), 5) == b"x"


# -------------------------------------------------------------- connections


async def test_connection_sharing(srv: Server) -> None:
    proxies = [
        srv.proxy,
        srv.client.proxy(f"echo:{srv.endpoint}"),
        srv.proxy.with_timeout(5),
        srv.proxy.with_context({"a": "b"}),
        srv.client.proxy(f"other:{srv.endpoint}"),
    ]
    srv.adapter.add(Echo(), "other")
    calls = [proxies[i % len(proxies)].invoke("echo", str(i).encode()) for i in range(100)]
    results = await asyncio.gather(*calls)
    assert results == [str(i).encode() for i in range(100)]
    assert srv.client.stats()["connections"] == 1
    assert srv.server.stats()["connections"] == 1
    await proxies[0].oneway().invoke("echo", b"oneway")
    await srv.proxy.ping()
    assert srv.client.stats()["connections"] == 1


async def test_reconnect_after_server_restart(comm: aiocomm.Communicator) -> None:
    first = aiocomm.Communicator()
    adapter = first.create_object_adapter()
    endpoint = adapter.endpoints[0]

    class Named:
        def __init__(self, name: bytes) -> None:
            self.name = name

        def who(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return self.name

    adapter.add(Named(b"first"), "obj")
    adapter.activate()
    proxy = comm.proxy(f"obj:{endpoint}")
    assert await proxy.invoke("who") == b"first"
    assert comm.stats()["connections"] == 1
    await first.destroy()
    await _wait_for(lambda: comm.stats()["connections"] == 0)

    second = aiocomm.Communicator()
    try:
        adapter = second.create_object_adapter(endpoint)
        assert adapter.endpoints == [endpoint]
        adapter.add(Named(b"second"), "obj")
        adapter.activate()
        assert await asyncio.wait_for(proxy.invoke("who"), 5) == b"second"
        assert comm.stats()["connections"] == 1
    finally:
        await second.destroy()


async def test_reconnect_without_waiting_for_close(comm: aiocomm.Communicator) -> None:
    # The server goes away and comes back before the client notices anything:
    # a twoway call (not idempotent) either succeeds on a new connection or
    # fails with a connection error, never hangs; the one after that succeeds.
    first = aiocomm.Communicator()
    adapter = first.create_object_adapter()
    endpoint = adapter.endpoints[0]
    adapter.add(Echo(), "echo")
    adapter.activate()
    proxy = comm.proxy(f"echo:{endpoint}")
    assert await proxy.invoke("echo", b"1") == b"1"
    await first.destroy()
    second = aiocomm.Communicator()
    try:
        adapter = second.create_object_adapter(endpoint)
        adapter.add(Echo(), "echo")
        adapter.activate()
        try:
            assert await asyncio.wait_for(proxy.invoke("echo", b"2"), 5) == b"2"
        except ConnectionError:
            pass
        assert await asyncio.wait_for(proxy.invoke("echo", b"3"), 5) == b"3"
    finally:
        await second.destroy()


_DYING_SERVER = textwrap.dedent("""
    import asyncio, os, sys
    import aiocomm

    class Dying:
        async def die(self, payload, current):
            # Stop listening first, so that the retry cannot land here; then die
            # with this request unanswered.
            current.adapter.deactivate()
            await asyncio.sleep(0.3)
            os._exit(0)

        def who(self, payload, current):
            return b"dying"

    async def main():
        async with aiocomm.Communicator() as comm:
            adapter = comm.create_object_adapter()
            adapter.add(Dying(), "obj")
            adapter.activate()
            print(adapter.endpoints[0], flush=True)
            await asyncio.sleep(20)

    asyncio.run(main())
""")


async def _start_dying_server() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DYING_SERVER, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 15)
    endpoint = line.decode().strip()
    assert endpoint.startswith("tcp -h 127.0.0.1 -p "), line
    return process, endpoint


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await asyncio.wait_for(process.wait(), 10)


@pytest.mark.parametrize("idempotent", [True, False])
async def test_retry_after_connection_loss(srv: Server, idempotent: bool) -> None:
    """The first endpoint's server dies while dispatching: an idempotent call is
    retried once (and reaches the second endpoint); any other call fails with
    ConnectionLostError."""

    class Survivor:
        def __init__(self) -> None:
            self.calls = 0

        def die(self, payload: bytes, current: aiocomm.Current) -> bytes:
            self.calls += 1
            return b"survived"

        def who(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"survivor"

    survivor = Survivor()
    srv.adapter.add(survivor, "obj")
    process, endpoint = await _start_dying_server()
    try:
        proxy = srv.client.proxy(f"obj:{endpoint}:{srv.endpoint}")
        assert await asyncio.wait_for(proxy.invoke("who"), 5) == b"dying"
        if idempotent:
            result = await asyncio.wait_for(proxy.invoke("die", idempotent=True), 10)
            assert result == b"survived"
            assert survivor.calls == 1
        else:
            with pytest.raises(aiocomm.ConnectionLostError) as info:
                await asyncio.wait_for(proxy.invoke("die"), 10)
            assert isinstance(info.value, ConnectionError)
            assert survivor.calls == 0
        await asyncio.wait_for(process.wait(), 10)
        # Either way the proxy works again (through the second endpoint).
        assert await asyncio.wait_for(proxy.invoke("who"), 5) == b"survivor"
    finally:
        await _stop(process)


async def test_many_concurrent_invocations(srv: Server) -> None:
    n = 1000
    plain = [srv.proxy.invoke("echo", i.to_bytes(4, "little") * (i % 7)) for i in range(n)]
    results = await asyncio.wait_for(asyncio.gather(*plain), 20)
    assert results == [i.to_bytes(4, "little") * (i % 7) for i in range(n)]
    asynchronous = [srv.proxy.invoke("aecho", str(i).encode()) for i in range(n)]
    results = await asyncio.wait_for(asyncio.gather(*asynchronous), 20)
    assert results == [str(i).encode() for i in range(n)]
    assert srv.client.stats()["pending_invocations"] == 0
    assert srv.client.stats()["connections"] == 1


# --------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((123,), {}),
        ((None,), {}),
        ((b"record",), {}),
        (("record", 123), {}),
        (("record", "text"), {}),
        (("record", [1, 2, 3]), {}),
        (("record", b""), {"context": {"k": 1}}),
        (("record", b""), {"context": {1: "v"}}),
        (("record", b""), {"context": {"k": None}}),
        (("record", b""), {"context": [1]}),
        (("record", b""), {"context": 5}),
        (("record", b""), {"timeout": "soon"}),
    ],
)
async def test_wrong_argument_types(srv: Server, args: tuple[Any, ...],
                                    kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        result = srv.proxy.invoke(*args, **kwargs)
        await asyncio.wait_for(result, 5)
    # The proxy still works, and the bad call never reached the servant.
    assert await srv.proxy.invoke("echo", b"fine") == b"fine"
    await asyncio.sleep(0.05)
    assert srv.servant.calls == []
    assert srv.client.stats()["pending_invocations"] == 0
    assert srv.client.stats()["outgoing_pending"] == 0


async def test_none_payload_is_empty(srv: Server) -> None:
    assert await srv.proxy.invoke("echo", None) == b""


# --------------------------------------------------------------- wrong loop


def test_wrong_loop_between_asyncio_runs() -> None:
    async def create() -> tuple[aiocomm.Communicator, str]:
        comm = aiocomm.Communicator()
        adapter = comm.create_object_adapter()
        adapter.add(Echo(), "echo")
        adapter.activate()
        return comm, adapter.endpoints[0]

    comm, endpoint = asyncio.run(create())

    async def use() -> None:
        proxy = comm.proxy(f"echo:{endpoint}")
        with pytest.raises(aiocomm.WrongLoopError) as info:
            await proxy.invoke("echo", b"x")
        assert isinstance(info.value, RuntimeError)
        with pytest.raises(aiocomm.WrongLoopError):
            comm.create_object_adapter()

    try:
        asyncio.run(use())
    finally:
        comm.destroy()
    assert comm.is_destroyed


async def test_wrong_loop_from_another_thread(srv: Server) -> None:
    outcome: dict[str, Any] = {}

    def other_thread() -> None:
        async def use() -> None:
            try:
                await srv.proxy.invoke("echo", b"x")
            except BaseException as e:
                outcome["invoke"] = e
            try:
                srv.client.create_object_adapter()
            except BaseException as e:
                outcome["adapter"] = e

        asyncio.run(use())

    thread = threading.Thread(target=other_thread)
    thread.start()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("invoke"), aiocomm.WrongLoopError), outcome
    assert isinstance(outcome.get("adapter"), aiocomm.WrongLoopError), outcome
    # The communicator still works on its own loop.
    assert await srv.proxy.invoke("echo", b"ok") == b"ok"


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["native-future", "timed"])
async def test_local_payload_errors_on_both_call_paths(timeout: float | None) -> None:
    # A call without a timeout takes one native step; with one, the runtime
    # keeps its future and timer. Both refuse bad payloads the same way.
    server = aiocomm.Communicator()
    client = aiocomm.Communicator(message_size_max=2000)
    try:
        adapter = server.create_object_adapter()

        class Echo:
            def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
                return payload

        adapter.add(Echo(), "e")
        adapter.activate()
        proxy = client.proxy(f"e:{adapter.endpoints[0]}")
        with pytest.raises(aiocomm.MessageSizeError):
            proxy.invoke("echo", b"x" * 5000, timeout=timeout)
        with pytest.raises(ValueError, match="contiguous"):
            proxy.invoke("echo", memoryview(b"abcdef")[::2], timeout=timeout)
        with pytest.raises(TypeError):
            proxy.invoke("echo", "text", timeout=timeout)  # type: ignore[arg-type]
        assert await proxy.invoke("echo", memoryview(b"abcdef")[1:3], timeout=timeout) == b"bc"
        assert client.stats()["pending_invocations"] == 0
        await client.destroy()
        with pytest.raises(aiocomm.CommunicatorDestroyedError):
            proxy.invoke("echo", b"late", timeout=timeout)
    finally:
        await client.destroy()
        await server.destroy()
