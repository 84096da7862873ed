"""Interoperability with stock ZeroC Ice, 3.7 and 3.8, over raw (untyped) calls.

Every test runs once per Ice version (the ``echo_peer`` fixture) and, as
everywhere, on the default asyncio loop and on uvloop:

(a) an aiocomm client calls the Ice peer server (``ice_peer_server.py`` for
    3.7, ``ice38_peer_server.py`` for 3.8, both serving ``echo_servant.py``);
(b) the Ice peer client (``ice_peer_client.py`` / ``ice38_peer_client.py``,
    running ``echo_scenarios.py``) calls an aiocomm server.

What only one version has is tested in ``test_ice37_acm.py`` (Ice 3.7's ACM)
and ``test_ice38_interop.py`` (Ice 3.8's reply statuses and idle check).
"""

from __future__ import annotations

import asyncio
import builtins
import struct
import time
from collections.abc import Callable

import pytest
from aiocomm_echo import (
    AiocommServer,
    DispatchErrorCase,
    EchoServant,
    check_dispatch_error,
    get_int,
    ice_proxy,
    wait_count,
)
from echo_peers import EchoPeer
from ice_wire import (
    ECHO_SIZES,
    FAILURE_PAYLOAD,
    LOCAL_TEXT,
    MIB,
    NEAR_MAX,
    TYPE_ID,
    UNKNOWN_TEXT,
    UNKNOWN_USER_TEXT,
    pattern,
    write_context,
)
from peer_process import PeerServer

import aiocomm

# ---------------------------------------------------------------------------
# (a) aiocomm client -> Ice server
# ---------------------------------------------------------------------------


async def test_proxy_from_ice_string(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    # Ice 3.7 prints "test -t -e 1.1:tcp -h 127.0.0.1 -p N -t 60000",
    # Ice 3.8 "test:tcp -h 127.0.0.1 -p N": no -t/-e options, no endpoint timeout.
    proxy = comm.proxy(echo_server.proxy)
    assert proxy.identity.name == "test"
    assert proxy.identity.category == ""
    assert proxy.facet == ""
    assert not proxy.is_oneway
    await proxy.ping()


@pytest.mark.parametrize("size", ECHO_SIZES)
async def test_echo(comm: aiocomm.Communicator, echo_server: PeerServer, size: int) -> None:
    data = pattern(size, size)
    result = await ice_proxy(comm, echo_server).invoke("echo", data)
    assert bytes(result) == data


async def test_echo_bytes_like_payloads(
    comm: aiocomm.Communicator, echo_server: PeerServer
) -> None:
    proxy = ice_proxy(comm, echo_server)
    assert await proxy.invoke("echo", bytearray(b"abc")) == b"abc"
    assert await proxy.invoke("echo", memoryview(b"xyz")) == b"xyz"
    assert await proxy.invoke("echo") == b""


async def test_builtins(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    await proxy.ping()
    assert await proxy.ice_is_a(TYPE_ID) is True
    assert await proxy.ice_is_a("::Ice::Object") is True
    assert await proxy.ice_is_a("::Test::Other") is False
    assert await proxy.ice_id() == TYPE_ID
    assert await proxy.ice_ids() == ["::Ice::Object", TYPE_ID]


async def test_ping_missing_object(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    with pytest.raises(aiocomm.ObjectNotExistError) as info:
        await ice_proxy(comm, echo_server, "missing").ping()
    assert info.value.status == 2


async def test_context_is_sent(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    assert await proxy.invoke("echo_context") == write_context({})
    ctx = {"b": "2", "a": "1", "empty": "", "\u00e9": "\u00fc" * 300}
    assert await proxy.invoke("echo_context", context=ctx) == write_context(ctx)
    assert await proxy.with_context(ctx).invoke("echo_context") == write_context(ctx)


async def test_operation_mode_is_sent(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    assert await proxy.invoke("get_mode") == b"\x00"
    assert await proxy.invoke("get_mode", idempotent=True) == b"\x02"


async def test_user_exception(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("fail_user", b"ignored")
    assert bytes(info.value.payload) == FAILURE_PAYLOAD
    assert isinstance(info.value, aiocomm.AiocommError)
    assert await proxy.invoke("echo", b"still-ok") == b"still-ok"


ERROR_CASES: list[DispatchErrorCase] = [
    # identity, facet, operation, payload, error class, reply status, text in the message
    ("missing", None, "echo", b"x", "ObjectNotExistError", 2, None),
    ("test", "nosuch", "echo", b"x", "FacetNotExistError", 3, None),
    ("test", None, "nope", b"x", "OperationNotExistError", 4, None),
    ("test", None, "fail_local", b"", "UnknownLocalError", 5, LOCAL_TEXT),
    ("test", None, "fail_unknown_user", b"", "UnknownUserError", 6, UNKNOWN_USER_TEXT),
    ("test", None, "fail_unknown", b"", "UnknownError", 7, UNKNOWN_TEXT),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[f"status{case[5]}" for case in ERROR_CASES])
async def test_dispatch_errors(
    comm: aiocomm.Communicator,
    echo_server: PeerServer,
    case: DispatchErrorCase,
) -> None:
    await check_dispatch_error(comm, echo_server, case)


async def test_oneway(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    twoway = ice_proxy(comm, echo_server)
    oneway = twoway.oneway()
    assert oneway.is_oneway and not twoway.is_oneway
    assert not oneway.twoway().is_oneway
    base = await get_int(twoway, "get_count")
    n = 100
    for _ in range(n):
        assert await oneway.invoke("count_oneway") == b""
    await wait_count(twoway, base + n)
    # Many oneways in flight at once.
    await asyncio.gather(*(oneway.invoke("count_oneway") for _ in range(n)))
    await wait_count(twoway, base + 2 * n)


async def test_oneway_from_stringified_proxy(
    comm: aiocomm.Communicator, echo_server: PeerServer
) -> None:
    twoway = ice_proxy(comm, echo_server)
    oneway = comm.proxy(f"test -o:{echo_server.endpoints}")
    assert oneway.is_oneway
    base = await get_int(twoway, "get_count")
    assert await oneway.invoke("count_oneway") == b""
    await wait_count(twoway, base + 1)


async def test_many_concurrent_calls(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    payloads = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(500)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), timeout=30
    )
    assert [bytes(r) for r in results] == payloads


async def test_concurrent_large_calls(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    payloads = [pattern(200_000 + i, i) for i in range(8)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), timeout=30
    )
    assert [bytes(r) for r in results] == payloads


async def test_dispatches_overlap(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    start = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("sleep", struct.pack("<i", 250)) for _ in range(20))),
        timeout=30,
    )
    assert time.monotonic() - start < 2.5  # 20 x 250 ms would be 5 s one at a time


async def test_invocation_timeout(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    proxy = ice_proxy(comm, echo_server)
    with pytest.raises(aiocomm.InvocationTimeoutError):
        await proxy.invoke("sleep", struct.pack("<i", 600), timeout=0.1)
    with pytest.raises(TimeoutError):
        await proxy.with_timeout(0.1).invoke("sleep", struct.pack("<i", 600))
    # The late replies arrive for forgotten requests; they must be ignored.
    await asyncio.sleep(0.8)
    assert await proxy.invoke("echo", b"after-timeout") == b"after-timeout"


async def test_message_over_ice_size_limit(
    echo_peer: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    server = peer_servers(echo_peer)  # its own: Ice drops the connection
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"before") == b"before"
        # Ice closes a connection that sends it a message over Ice.MessageSizeMax
        # (aiocomm may also refuse to send it): an error, not a hang.
        with pytest.raises(aiocomm.AiocommError) as info:
            await proxy.invoke("echo", bytes(MIB + 16), timeout=20)
        assert not isinstance(info.value, aiocomm.InvocationTimeoutError)
        assert await proxy.invoke("echo", b"after") == b"after"


async def test_connection_lost_when_ice_server_dies(
    echo_peer: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    server = peer_servers(echo_peer)
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        await proxy.ping()
        call = asyncio.ensure_future(proxy.invoke("sleep", struct.pack("<i", 5000)))
        await asyncio.sleep(0.3)
        server.kill()
        with pytest.raises(aiocomm.ConnectionLostError):
            await asyncio.wait_for(call, timeout=10)
        # Now nothing listens on that port.
        with pytest.raises(aiocomm.ConnectionRefusedError) as info:
            await proxy.invoke("echo", b"x", timeout=10)
        assert isinstance(info.value, builtins.ConnectionRefusedError)


# ---------------------------------------------------------------------------
# (b) Ice client -> aiocomm server
# ---------------------------------------------------------------------------


async def test_ice_client_echo(echo_peer: EchoPeer, aiocomm_server: AiocommServer) -> None:
    result = await echo_peer.run_client(aiocomm_server.proxy, "echo")
    assert f"echo_{NEAR_MAX}" in result["checks"]
    servant = aiocomm_server.servant
    assert {"k": "v", "empty": "", "\u00e9": "\u00fc" * 300} in servant.contexts
    assert servant.modes == {0, 2}
    assert {address[0] for address in servant.remote_addresses} == {"127.0.0.1"}


async def test_ice_client_builtins(echo_peer: EchoPeer, aiocomm_server: AiocommServer) -> None:
    result = await echo_peer.run_client(aiocomm_server.proxy, "builtins")
    assert set(result["info"]["ice_ids"]) == {"::Ice::Object", TYPE_ID}


@pytest.mark.parametrize(("scenario", "statuses"), [("errors", [1, 2, 3, 4, 7]),
                                                    ("errors_local", [5, 6])])
async def test_ice_client_errors(
    echo_peer: EchoPeer, aiocomm_server: AiocommServer, scenario: str, statuses: list[int]
) -> None:
    result = await echo_peer.run_client(aiocomm_server.proxy, scenario)
    for status in statuses:
        assert any(c.startswith(f"status{status}_") for c in result["checks"]), result["checks"]


async def test_ice_client_oneway(echo_peer: EchoPeer, aiocomm_server: AiocommServer) -> None:
    await echo_peer.run_client(aiocomm_server.proxy, "oneway")
    assert aiocomm_server.servant.count == 100


async def test_ice_client_batch_oneway(
    echo_peer: EchoPeer, aiocomm_server: AiocommServer
) -> None:
    await echo_peer.run_client(aiocomm_server.proxy, "batch")
    assert aiocomm_server.servant.count == 50


async def test_ice_client_concurrent(echo_peer: EchoPeer, aiocomm_server: AiocommServer) -> None:
    # 200 ice_invokeAsync calls at once (3.8: awaited together on its asyncio integration).
    result = await echo_peer.run_client(aiocomm_server.proxy, "concurrent")
    assert "concurrent_echo_200" in result["checks"]
    assert "concurrent_sleep_20" in result["checks"]


async def test_ice_client_then_aiocomm_client(
    echo_peer: EchoPeer, comm: aiocomm.Communicator, aiocomm_server: AiocommServer
) -> None:
    # The Ice client closes its connection gracefully; the server carries on.
    await echo_peer.run_client(aiocomm_server.proxy, "builtins")
    await echo_peer.run_client(aiocomm_server.proxy, "echo")
    proxy = comm.proxy(aiocomm_server.proxy)
    assert await proxy.invoke("echo", b"aiocomm") == b"aiocomm"


@pytest.mark.parametrize("scenario", ["echo", "builtins", "oneway"])
async def test_ice_client_default_servant(
    echo_peer: EchoPeer, comm: aiocomm.Communicator, scenario: str
) -> None:
    servant = EchoServant()
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    adapter.add_default_servant(servant, category="cat")
    adapter.activate()
    try:
        await echo_peer.run_client(str(adapter.create_proxy("cat/anything")), scenario)
    finally:
        await adapter.destroy()
