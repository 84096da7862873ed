"""Interoperability with ZeroC Ice 3.7 (Debian's python3-zeroc-ice).

(a) an aiocomm client calls ``ice_peer_server.py`` (a real Ice server);
(b) ``ice_peer_client.py`` (a real Ice client) calls an aiocomm server.

Every test runs on the default asyncio loop and on uvloop (the top-level
conftest parametrizes ``event_loop_policy``).
"""

from __future__ import annotations

import asyncio
import builtins
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

import aiocomm

if TYPE_CHECKING:  # conftest is not imported at run time (no packages needed)
    from tests.interop.conftest import IceClientRunner, IcePeerServer

# Keep these in sync with ice_peer_server.py and ice_peer_client.py.
TYPE_ID = "::Test::Echo"
_REASON = b"\x0cfail_user ok"
# An encoding-1.1 user exception ::Test::Failure { string reason; }, sliced format.
FAILURE_PAYLOAD = b"\x31\x0e::Test::Failure" + struct.pack("<i", 4 + len(_REASON)) + _REASON
UNKNOWN_TEXT = "fail_unknown: deliberate Python error"
LOCAL_TEXT = "fail_local"
UNKNOWN_USER_TEXT = "fail_unknown_user: deliberate"

MIB = 1 << 20
NEAR_MAX = MIB - 1024  # just under Ice's default Ice.MessageSizeMax, headers included
ECHO_SIZES = [0, 1, 16, 255, 256, 4096, 65536, 512 * 1024, NEAR_MAX]


def pattern(n: int, seed: int = 0) -> bytes:
    block = bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (n // len(block) + 1))[:n]


def write_size(n: int) -> bytes:
    return bytes([n]) if n < 255 else b"\xff" + struct.pack("<i", n)


def write_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return write_size(len(raw)) + raw


def write_context(ctx: dict[str, str]) -> bytes:
    items = sorted(ctx.items())
    return write_size(len(items)) + b"".join(write_string(k) + write_string(v) for k, v in items)


async def get_count(proxy: aiocomm.Proxy) -> int:
    out = await proxy.invoke("get_count")
    assert len(out) == 4
    return int(struct.unpack("<i", out)[0])


async def wait_count(proxy: aiocomm.Proxy, expected: int, timeout: float = 15.0) -> None:
    """Oneway requests may be dispatched after a later twoway: poll."""
    deadline = time.monotonic() + timeout
    count = await get_count(proxy)
    while count < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        count = await get_count(proxy)
    assert count == expected


# ---------------------------------------------------------------------------
# (a) aiocomm client -> Ice 3.7 server
# ---------------------------------------------------------------------------


def ice_proxy(
    comm: aiocomm.Communicator,
    server: IcePeerServer,
    identity: str = "test",
    facet: str | None = None,
) -> aiocomm.Proxy:
    return comm.proxy(server.proxy_for(identity, facet))


async def test_proxy_from_ice_string(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    # Ice 3.7 prints "test -t -e 1.1:tcp -h 127.0.0.1 -p N -t 60000".
    proxy = comm.proxy(ice_server.proxy)
    assert proxy.identity.name == "test"
    assert proxy.identity.category == ""
    assert proxy.facet == ""
    assert not proxy.is_oneway
    await proxy.ping()


@pytest.mark.parametrize("size", ECHO_SIZES)
async def test_echo(comm: aiocomm.Communicator, ice_server: IcePeerServer, size: int) -> None:
    data = pattern(size, size)
    result = await ice_proxy(comm, ice_server).invoke("echo", data)
    assert bytes(result) == data


async def test_echo_bytes_like_payloads(
    comm: aiocomm.Communicator, ice_server: IcePeerServer
) -> None:
    proxy = ice_proxy(comm, ice_server)
    assert await proxy.invoke("echo", bytearray(b"abc")) == b"abc"
    assert await proxy.invoke("echo", memoryview(b"xyz")) == b"xyz"
    assert await proxy.invoke("echo") == b""


async def test_builtins(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    proxy = ice_proxy(comm, ice_server)
    await proxy.ping()
    assert await proxy.ice_is_a(TYPE_ID) is True
    assert await proxy.ice_is_a("::Ice::Object") is True
    assert await proxy.ice_is_a("::Test::Other") is False
    assert await proxy.ice_id() == TYPE_ID
    assert await proxy.ice_ids() == ["::Ice::Object", TYPE_ID]


async def test_ping_missing_object(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    with pytest.raises(aiocomm.ObjectNotExistError) as info:
        await ice_proxy(comm, ice_server, "missing").ping()
    assert info.value.status == 2


async def test_context_is_sent(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    proxy = ice_proxy(comm, ice_server)
    assert await proxy.invoke("echo_context") == write_context({})
    ctx = {"b": "2", "a": "1", "empty": "", "\u00e9": "\u00fc" * 300}
    assert await proxy.invoke("echo_context", context=ctx) == write_context(ctx)
    assert await proxy.with_context(ctx).invoke("echo_context") == write_context(ctx)


async def test_operation_mode_is_sent(
    comm: aiocomm.Communicator, ice_server: IcePeerServer
) -> None:
    proxy = ice_proxy(comm, ice_server)
    assert await proxy.invoke("get_mode") == b"\x00"
    assert await proxy.invoke("get_mode", idempotent=True) == b"\x02"


async def test_user_exception(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    proxy = ice_proxy(comm, ice_server)
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("fail_user", b"ignored")
    assert bytes(info.value.payload) == FAILURE_PAYLOAD
    assert isinstance(info.value, aiocomm.AiocommError)
    assert await proxy.invoke("echo", b"still-ok") == b"still-ok"


ERROR_CASES = [
    # identity, facet, operation, error class, reply status, text in the message
    ("missing", None, "echo", "ObjectNotExistError", 2, None),
    ("test", "nosuch", "echo", "FacetNotExistError", 3, None),
    ("test", None, "nope", "OperationNotExistError", 4, None),
    ("test", None, "fail_local", "UnknownLocalError", 5, LOCAL_TEXT),
    ("test", None, "fail_unknown_user", "UnknownUserError", 6, UNKNOWN_USER_TEXT),
    ("test", None, "fail_unknown", "UnknownError", 7, UNKNOWN_TEXT),
]


@pytest.mark.parametrize(
    ("identity", "facet", "operation", "error", "status", "text"),
    ERROR_CASES,
    ids=[f"status{case[4]}" for case in ERROR_CASES],
)
async def test_dispatch_errors(
    comm: aiocomm.Communicator,
    ice_server: IcePeerServer,
    identity: str,
    facet: str | None,
    operation: str,
    error: str,
    status: int,
    text: str | None,
) -> None:
    error_class = getattr(aiocomm, error)
    with pytest.raises(aiocomm.DispatchError) as info:
        await ice_proxy(comm, ice_server, identity, facet).invoke(operation, b"payload")
    assert type(info.value) is error_class
    assert info.value.status == status
    if text is not None:
        assert text in info.value.message
    if status in (5, 6):
        assert isinstance(info.value, aiocomm.UnknownError)
    # The connection is still usable.
    assert await ice_proxy(comm, ice_server).invoke("echo", b"after") == b"after"


async def test_oneway(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    twoway = ice_proxy(comm, ice_server)
    oneway = twoway.oneway()
    assert oneway.is_oneway and not twoway.is_oneway
    assert not oneway.twoway().is_oneway
    base = await get_count(twoway)
    n = 100
    for _ in range(n):
        assert await oneway.invoke("count_oneway") == b""
    await wait_count(twoway, base + n)
    # Many oneways in flight at once.
    await asyncio.gather(*(oneway.invoke("count_oneway") for _ in range(n)))
    await wait_count(twoway, base + 2 * n)


async def test_oneway_from_stringified_proxy(
    comm: aiocomm.Communicator, ice_server: IcePeerServer
) -> None:
    twoway = ice_proxy(comm, ice_server)
    oneway = comm.proxy(f"test -o:{ice_server.endpoints}")
    assert oneway.is_oneway
    base = await get_count(twoway)
    assert await oneway.invoke("count_oneway") == b""
    await wait_count(twoway, base + 1)


async def test_many_concurrent_calls(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    proxy = ice_proxy(comm, ice_server)
    payloads = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(500)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), timeout=30
    )
    assert [bytes(r) for r in results] == payloads


async def test_concurrent_large_calls(
    comm: aiocomm.Communicator, ice_server: IcePeerServer
) -> None:
    proxy = ice_proxy(comm, ice_server)
    payloads = [pattern(200_000 + i, i) for i in range(8)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), timeout=30
    )
    assert [bytes(r) for r in results] == payloads


async def test_dispatches_overlap(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    proxy = ice_proxy(comm, ice_server)
    start = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("sleep", struct.pack("<i", 250)) for _ in range(20))),
        timeout=30,
    )
    assert time.monotonic() - start < 2.5  # 20 x 250 ms would be 5 s one at a time


async def test_invocation_timeout(comm: aiocomm.Communicator, ice_server: IcePeerServer) -> None:
    proxy = ice_proxy(comm, ice_server)
    with pytest.raises(aiocomm.InvocationTimeoutError):
        await proxy.invoke("sleep", struct.pack("<i", 600), timeout=0.1)
    with pytest.raises(TimeoutError):
        await proxy.with_timeout(0.1).invoke("sleep", struct.pack("<i", 600))
    # The late replies arrive for forgotten requests; they must be ignored.
    await asyncio.sleep(0.8)
    assert await proxy.invoke("echo", b"after-timeout") == b"after-timeout"


async def test_message_over_ice_size_limit(
    comm: aiocomm.Communicator, ice_server: IcePeerServer
) -> None:
    proxy = ice_proxy(comm, ice_server)
    assert await proxy.invoke("echo", b"before") == b"before"
    # Ice closes a connection that sends it a message over Ice.MessageSizeMax
    # (aiocomm may also refuse to send it): an error, not a hang.
    with pytest.raises(aiocomm.AiocommError) as info:
        await proxy.invoke("echo", bytes(MIB + 16), timeout=20)
    assert not isinstance(info.value, aiocomm.InvocationTimeoutError)
    assert await proxy.invoke("echo", b"after") == b"after"


async def test_accepts_ice_heartbeats(ice_server_factory: Any) -> None:
    # Ice sends a validate-connection message on every ACM tick (~0.5 s) and
    # never closes: aiocomm must take them at any time, on the same connection.
    server: IcePeerServer = ice_server_factory(
        "--acm-timeout", "1", "--acm-heartbeat", "3", "--acm-close", "0"
    )
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        assert await proxy.invoke("connection_count") == struct.pack("<i", 1)


async def test_heartbeats_keep_ice_connection_open(ice_server_factory: Any) -> None:
    # Ice (no heartbeats of its own) gracefully closes a connection on which
    # it has read nothing for 2 s. aiocomm with idle_timeout=3 writes a
    # heartbeat whenever it has written nothing for 1.5 s, so Ice keeps the
    # connection through a 2.8 s silence (aiocomm itself closes a connection
    # only after idle_timeout without receiving anything).
    server: IcePeerServer = ice_server_factory(
        "--acm-timeout", "2", "--acm-heartbeat", "0", "--acm-close", "1"
    )
    async with aiocomm.Communicator(idle_timeout=3.0, invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        count = await proxy.invoke("connection_count")
        assert count == struct.pack("<i", 1), "the connection was closed and re-established"


async def test_reconnect_after_ice_closes_idle_connection(ice_server_factory: Any) -> None:
    # Ice (no heartbeats) gracefully closes the connection after ~1-1.5 s
    # idle; aiocomm (idle_timeout 60: no heartbeat yet) must then reconnect.
    server: IcePeerServer = ice_server_factory(
        "--acm-timeout", "1", "--acm-heartbeat", "0", "--acm-close", "1"
    )
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        assert await proxy.invoke("connection_count") == struct.pack("<i", 2)


async def test_connection_lost_when_ice_server_dies(
    comm: aiocomm.Communicator, ice_server_factory: Any
) -> None:
    server: IcePeerServer = ice_server_factory()
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
# (b) Ice 3.7 client -> aiocomm server
# ---------------------------------------------------------------------------


class EchoServant:
    """The aiocomm counterpart of ice_peer_server.py's servant."""

    type_ids: ClassVar[list[str]] = [TYPE_ID]

    def __init__(self) -> None:
        self.count = 0
        self.contexts: list[dict[str, str]] = []
        self.modes: set[int] = set()
        self.remote_hosts: set[str] = set()

    async def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.contexts.append(dict(current.context))
        self.modes.add(int(getattr(current.mode, "value", current.mode)))
        if current.remote_address:
            self.remote_hosts.add(current.remote_address[0])
        return payload

    def fail_user(self, payload: bytes, current: aiocomm.Current) -> None:
        raise aiocomm.UserError(FAILURE_PAYLOAD)

    def fail_unknown(self, payload: bytes, current: aiocomm.Current) -> None:
        raise RuntimeError(UNKNOWN_TEXT)

    def count_oneway(self, payload: bytes, current: aiocomm.Current) -> None:
        self.count += 1

    def get_count(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return struct.pack("<i", self.count)

    async def sleep(self, payload: bytes, current: aiocomm.Current) -> None:
        (ms,) = struct.unpack_from("<i", payload, 0)
        await asyncio.sleep(ms / 1000.0)


@dataclass
class AiocommServer:
    adapter: aiocomm.ObjectAdapter
    servant: EchoServant
    proxy: str


@pytest.fixture
async def aiocomm_server(comm: aiocomm.Communicator) -> AsyncIterator[AiocommServer]:
    servant = EchoServant()
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    proxy = adapter.add(servant, "test")
    adapter.activate()
    try:
        yield AiocommServer(adapter, servant, str(proxy))
    finally:
        await adapter.destroy()


async def test_ice_client_echo(aiocomm_server: AiocommServer, ice_client: IceClientRunner) -> None:
    result = await ice_client(aiocomm_server.proxy, "echo")
    assert "echo_1047552" in result["checks"]
    servant = aiocomm_server.servant
    assert {"k": "v", "empty": "", "\u00e9": "\u00fc" * 300} in servant.contexts
    assert servant.modes == {0, 2}
    assert servant.remote_hosts == {"127.0.0.1"}


async def test_ice_client_builtins(
    aiocomm_server: AiocommServer, ice_client: IceClientRunner
) -> None:
    result = await ice_client(aiocomm_server.proxy, "builtins")
    assert set(result["info"]["ice_ids"]) == {"::Ice::Object", TYPE_ID}


async def test_ice_client_errors(
    aiocomm_server: AiocommServer, ice_client: IceClientRunner
) -> None:
    result = await ice_client(aiocomm_server.proxy, "errors")
    for status in (1, 2, 3, 4, 7):
        assert any(c.startswith(f"status{status}_") for c in result["checks"])


async def test_ice_client_oneway(
    aiocomm_server: AiocommServer, ice_client: IceClientRunner
) -> None:
    await ice_client(aiocomm_server.proxy, "oneway")
    assert aiocomm_server.servant.count == 100


async def test_ice_client_batch_oneway(
    aiocomm_server: AiocommServer, ice_client: IceClientRunner
) -> None:
    await ice_client(aiocomm_server.proxy, "batch")
    assert aiocomm_server.servant.count == 50


async def test_ice_client_concurrent(
    aiocomm_server: AiocommServer, ice_client: IceClientRunner
) -> None:
    result = await ice_client(aiocomm_server.proxy, "concurrent")
    assert "concurrent_echo_200" in result["checks"]


async def test_ice_client_then_aiocomm_client(
    comm: aiocomm.Communicator, aiocomm_server: AiocommServer, ice_client: IceClientRunner
) -> None:
    # The Ice client closes its connection gracefully; the server carries on.
    await ice_client(aiocomm_server.proxy, "builtins")
    await ice_client(aiocomm_server.proxy, "echo")
    proxy = comm.proxy(aiocomm_server.proxy)
    assert await proxy.invoke("echo", b"aiocomm") == b"aiocomm"


@pytest.mark.parametrize("scenario", ["echo", "builtins", "oneway"])
async def test_ice_client_default_servant(
    comm: aiocomm.Communicator, ice_client: IceClientRunner, scenario: str
) -> None:
    servant = EchoServant()
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    adapter.add_default_servant(servant, category="cat")
    adapter.activate()
    try:
        await ice_client(str(adapter.create_proxy("cat/anything")), scenario)
    finally:
        await adapter.destroy()
