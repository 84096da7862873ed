"""Interoperability with ZeroC Ice 3.8 (``zeroc-ice`` 3.8 for Python).

(a) an aiocomm client calls ``ice38_peer_server.py`` (a real Ice 3.8 server);
(b) ``ice38_peer_client.py`` (a real Ice 3.8 client) calls an aiocomm server;
(c) idle check and heartbeats, Ice 3.8's replacement for ACM, both ways: with
    ``Ice.Connection.*.IdleTimeout=4`` on the Ice side and
    ``Communicator(idle_timeout=4.0)`` on ours, a connection left idle for 12 s
    must stay up. Ice aborts a connection on which it has read nothing for its
    idle timeout, so aiocomm must heartbeat; aiocomm closes a connection on
    which it has read nothing for its idle timeout, so it must accept Ice's
    heartbeats. Negative controls show each side really does close an idle
    connection when the other side's heartbeats are too slow, so the positive
    tests can see a failure.

The Ice 3.8 peers run under ``AIOCOMM_ICE38_PYTHON`` or else the first of
pyenv's ``versions/3.12*/bin/python`` that imports Ice 3.8. ``bash
.ci/ice38-peer.sh`` makes one, ``build/venv-ice38/bin/python``: from the wheel
in ``../shared/wheels/`` when it is there (seconds), else from source (10-25
minutes). Without a peer the tests skip and say why, except when
``AIOCOMM_ICE38_PYTHON`` is set under ``CI=true``: a stage that names the peer
must have it, so a missing or broken one fails the tests. CI's py3.12 stage
(``.ci/run``) installs the peer and names it; the other stages run without it
and leave the variable unset, so there the tests skip. (The Ice 3.7 peer of
``test_ice_interop.py`` is in every stage: ``CI=true`` alone requires it.)

Every async test runs on the default asyncio loop and on uvloop (the
top-level conftest parametrizes the loop).
"""

from __future__ import annotations

import asyncio
import builtins
import os
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from peer_process import CLIENT_TIMEOUT, PeerServer, run_peer_client
from peer_pythons import ice38_python

import aiocomm

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "ice38_peer_server.py"
CLIENT_SCRIPT = HERE / "ice38_peer_client.py"
ENV_VAR = "AIOCOMM_ICE38_PYTHON"
CANDIDATES = os.path.join(
    os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions/3.12*/bin/python"
)


# Keep these in sync with ice38_peer_server.py and ice38_peer_client.py.
TYPE_ID = "::Test::Echo"
_REASON = b"\x0cfail_user ok"
# An encoding-1.1 user exception ::Test::Failure { string reason; }, sliced format.
FAILURE_PAYLOAD = b"\x31\x0e::Test::Failure" + struct.pack("<i", 4 + len(_REASON)) + _REASON
UNKNOWN_TEXT = "fail_unknown: deliberate Python error"
LOCAL_TEXT = "fail_local"
UNKNOWN_USER_TEXT = "fail_unknown_user: deliberate"
EXTRA_STATUSES = [8, 9, 10, 42]  # Ice 3.8: InvalidData, Unauthorized, NotSupported; any byte

MIB = 1 << 20
NEAR_MAX = MIB - 1024  # just under Ice's default Ice.MessageSizeMax, headers included
ECHO_SIZES = [0, 1, 16, 255, 256, 4096, 65536, 512 * 1024, NEAR_MAX]

# Each side heartbeats after half of it without writing, and drops the
# connection after all of it without reading: a 2x margin that timer
# granularity and a loaded 2-core machine eat into (2 s once lost a
# connection in CI), so the idle timeout is 4 s.
IDLE_TIMEOUT = 4  # seconds, on both sides
IDLE_SECONDS = 3.0 * IDLE_TIMEOUT  # how long the connection is left idle: three idle timeouts


def Ice38PeerServer(python: str, *args: str) -> PeerServer:
    """A running ``ice38_peer_server.py`` subprocess."""
    return PeerServer("Ice 3.8 peer", python, SERVER_SCRIPT, *args)


@pytest.fixture(scope="session")
def ice38_server() -> Iterator[Ice38PeerServer]:
    """One Ice 3.8 server with default settings for the session."""
    server = Ice38PeerServer(ice38_python())
    try:
        yield server
    finally:
        rc = server.stop()
        stderr = server.stderr_text()
        server.close()
    assert rc == 0, f"Ice 3.8 peer server exited with {rc}:\n{stderr}"


@pytest.fixture
def ice38_server_factory() -> Iterator[Callable[..., Ice38PeerServer]]:
    """Start extra Ice 3.8 servers (e.g. with an idle timeout); stopped at teardown."""
    python = ice38_python()
    servers: list[Ice38PeerServer] = []

    def start(*args: str) -> Ice38PeerServer:
        server = Ice38PeerServer(python, *args)
        servers.append(server)
        return server

    yield start
    failures = []
    for server in servers:
        rc = server.stop()
        if rc != 0 and not server.killed:
            failures.append(f"exit {rc}:\n{server.stderr_text()}")
        server.close()
    assert not failures, "Ice 3.8 peer server failed: " + "\n".join(failures)


async def run_ice38_client(
    proxy: str, scenario: str, *options: str, timeout: float = CLIENT_TIMEOUT
) -> dict[str, Any]:
    """Run one ``ice38_peer_client.py`` scenario without blocking the event loop.

    Fails the test (with the client's output) unless it reports success.
    """
    command = [ice38_python(), str(CLIENT_SCRIPT), proxy, scenario, *options]
    result = await run_peer_client("Ice 3.8 peer", command, timeout=timeout)
    assert result["ice_version"].startswith("3.8")
    return result


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


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


def read_strings(buf: bytes) -> list[str]:
    """Decode a sequence<string> (sizes < 255 only: enough for close reasons)."""
    n, pos, out = buf[0], 1, []
    for _ in range(n):
        size = buf[pos]
        out.append(buf[pos + 1 : pos + 1 + size].decode("utf-8", "replace"))
        pos += 1 + size
    return out


async def get_int(proxy: aiocomm.Proxy, op: str) -> int:
    out = await proxy.invoke(op)
    assert len(out) == 4
    return int(struct.unpack("<i", out)[0])


async def wait_count(proxy: aiocomm.Proxy, expected: int, timeout: float = 15.0) -> None:
    """Oneway requests may be dispatched after a later twoway: poll."""
    deadline = time.monotonic() + timeout
    count = await get_int(proxy, "get_count")
    while count < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        count = await get_int(proxy, "get_count")
    assert count == expected


async def watch_connections(
    comm: aiocomm.Communicator, seconds: float, interval: float = 0.1
) -> list[int]:
    """Sample ``stats()["connections"]`` for ``seconds``."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(comm.stats()["connections"])
        await asyncio.sleep(interval)
    return samples


# ---------------------------------------------------------------------------
# (a) aiocomm client -> Ice 3.8 server
# ---------------------------------------------------------------------------


def ice_proxy(
    comm: aiocomm.Communicator,
    server: Ice38PeerServer,
    identity: str = "test",
    facet: str | None = None,
) -> aiocomm.Proxy:
    return comm.proxy(server.proxy_for(identity, facet))


async def test_proxy_from_ice38_string(
    comm: aiocomm.Communicator, ice38_server: Ice38PeerServer
) -> None:
    # Ice 3.8 prints "test:tcp -h 127.0.0.1 -p N": no -t/-e options, no endpoint timeout.
    proxy = comm.proxy(ice38_server.proxy)
    assert proxy.identity.name == "test"
    assert proxy.identity.category == ""
    assert proxy.facet == ""
    assert not proxy.is_oneway
    await proxy.ping()
    # The 3.7 style with an endpoint timeout still parses (Ice 3.8 ignores -t).
    await comm.proxy(f"test -t -e 1.1:{ice38_server.endpoints} -t 60000").ping()


@pytest.mark.parametrize("size", ECHO_SIZES)
async def test_echo(comm: aiocomm.Communicator, ice38_server: Ice38PeerServer, size: int) -> None:
    data = pattern(size, size)
    result = await ice_proxy(comm, ice38_server).invoke("echo", data)
    assert bytes(result) == data


async def test_builtins(comm: aiocomm.Communicator, ice38_server: Ice38PeerServer) -> None:
    proxy = ice_proxy(comm, ice38_server)
    await proxy.ping()
    assert await proxy.ice_is_a(TYPE_ID) is True
    assert await proxy.ice_is_a("::Ice::Object") is True
    assert await proxy.ice_is_a("::Test::Other") is False
    assert await proxy.ice_id() == TYPE_ID
    assert await proxy.ice_ids() == ["::Ice::Object", TYPE_ID]
    with pytest.raises(aiocomm.ObjectNotExistError) as info:
        await ice_proxy(comm, ice38_server, "missing").ping()
    assert info.value.status == 2


async def test_context_and_mode_are_sent(
    comm: aiocomm.Communicator, ice38_server: Ice38PeerServer
) -> None:
    proxy = ice_proxy(comm, ice38_server)
    assert await proxy.invoke("echo_context") == write_context({})
    ctx = {"b": "2", "a": "1", "empty": "", "\u00e9": "\u00fc" * 300}
    assert await proxy.invoke("echo_context", context=ctx) == write_context(ctx)
    assert await proxy.with_context(ctx).invoke("echo_context") == write_context(ctx)
    assert await proxy.invoke("get_mode") == b"\x00"
    assert await proxy.invoke("get_mode", idempotent=True) == b"\x02"


async def test_user_exception(comm: aiocomm.Communicator, ice38_server: Ice38PeerServer) -> None:
    proxy = ice_proxy(comm, ice38_server)
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("fail_user", b"ignored")
    assert bytes(info.value.payload) == FAILURE_PAYLOAD
    assert await proxy.invoke("echo", b"still-ok") == b"still-ok"


ERROR_CASES = [
    # identity, facet, operation, payload, error class, reply status, text in the message
    ("missing", None, "echo", b"x", "ObjectNotExistError", 2, None),
    ("test", "nosuch", "echo", b"x", "FacetNotExistError", 3, None),
    ("test", None, "nope", b"x", "OperationNotExistError", 4, None),
    ("test", None, "fail_local", b"", "UnknownLocalError", 5, LOCAL_TEXT),
    ("test", None, "fail_unknown_user", b"", "UnknownUserError", 6, UNKNOWN_USER_TEXT),
    ("test", None, "fail_unknown", b"", "UnknownError", 7, UNKNOWN_TEXT),
    *(
        # Ice 3.8's Unauthorized (9) is PermissionDeniedError, a DispatchError.
        ("test", None, "fail_status", struct.pack("<i", s),
         "PermissionDeniedError" if s == 9 else "DispatchError", s, f"fail_status {s}")
        for s in EXTRA_STATUSES
    ),
]


@pytest.mark.parametrize(
    ("identity", "facet", "operation", "payload", "error", "status", "text"),
    ERROR_CASES,
    ids=[f"status{case[5]}" for case in ERROR_CASES],
)
async def test_dispatch_errors(
    comm: aiocomm.Communicator,
    ice38_server: Ice38PeerServer,
    identity: str,
    facet: str | None,
    operation: str,
    payload: bytes,
    error: str,
    status: int,
    text: str | None,
) -> None:
    error_class = getattr(aiocomm, error)
    with pytest.raises(aiocomm.DispatchError) as info:
        await ice_proxy(comm, ice38_server, identity, facet).invoke(operation, payload)
    assert type(info.value) is error_class
    assert info.value.status == status
    if text is not None:
        assert text in info.value.message
    if status in (5, 6):
        assert isinstance(info.value, aiocomm.UnknownError)
    if status in (2, 3, 4):
        assert info.value.identity.name == identity  # type: ignore[attr-defined]
        assert info.value.operation == operation  # type: ignore[attr-defined]
    # The connection is still usable.
    assert await ice_proxy(comm, ice38_server).invoke("echo", b"after") == b"after"


async def test_oneway(comm: aiocomm.Communicator, ice38_server: Ice38PeerServer) -> None:
    twoway = ice_proxy(comm, ice38_server)
    oneway = twoway.oneway()
    base = await get_int(twoway, "get_count")
    n = 100
    for _ in range(n):
        assert await oneway.invoke("count_oneway") == b""
    await wait_count(twoway, base + n)
    await asyncio.gather(*(oneway.invoke("count_oneway") for _ in range(n)))
    await wait_count(twoway, base + 2 * n)
    # A stringified oneway proxy.
    assert await comm.proxy(f"test -o:{ice38_server.endpoints}").invoke("count_oneway") == b""
    await wait_count(twoway, base + 2 * n + 1)


async def test_concurrent_calls(comm: aiocomm.Communicator, ice38_server: Ice38PeerServer) -> None:
    proxy = ice_proxy(comm, ice38_server)
    payloads = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(200)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), timeout=30
    )
    assert [bytes(r) for r in results] == payloads
    # Large ones interleaved, and Ice dispatches them concurrently.
    payloads = [pattern(200_000 + i, i) for i in range(8)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), timeout=30
    )
    assert [bytes(r) for r in results] == payloads
    start = time.monotonic()
    await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("sleep", struct.pack("<i", 250)) for _ in range(20))),
        timeout=30,
    )
    assert time.monotonic() - start < 2.5  # 20 x 250 ms would be 5 s one at a time


async def test_invocation_timeout(
    comm: aiocomm.Communicator, ice38_server: Ice38PeerServer
) -> None:
    proxy = ice_proxy(comm, ice38_server)
    with pytest.raises(aiocomm.InvocationTimeoutError):
        await proxy.invoke("sleep", struct.pack("<i", 600), timeout=0.1)
    await asyncio.sleep(0.8)  # the late reply must be ignored
    assert await proxy.invoke("echo", b"after-timeout") == b"after-timeout"


async def test_message_over_ice_size_limit(ice38_server_factory: Any) -> None:
    server: Ice38PeerServer = ice38_server_factory()
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"before") == b"before"
        # Ice closes a connection that sends it a message over Ice.MessageSizeMax
        # (aiocomm may also refuse to send it): an error, not a hang.
        with pytest.raises(aiocomm.AiocommError) as info:
            await proxy.invoke("echo", bytes(MIB + 16), timeout=20)
        assert not isinstance(info.value, aiocomm.InvocationTimeoutError)
        assert await proxy.invoke("echo", b"after") == b"after"


async def test_connection_lost_when_ice38_server_dies(ice38_server_factory: Any) -> None:
    server: Ice38PeerServer = ice38_server_factory()
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        await proxy.ping()
        call = asyncio.ensure_future(proxy.invoke("sleep", struct.pack("<i", 5000)))
        await asyncio.sleep(0.3)
        server.kill()
        with pytest.raises(aiocomm.ConnectionLostError):
            await asyncio.wait_for(call, timeout=10)
        with pytest.raises(aiocomm.ConnectionRefusedError) as info:
            await proxy.invoke("echo", b"x", timeout=10)
        assert isinstance(info.value, builtins.ConnectionRefusedError)


# ---------------------------------------------------------------------------
# (b) Ice 3.8 client -> aiocomm server
# ---------------------------------------------------------------------------


class EchoServant:
    """The aiocomm counterpart of ice38_peer_server.py's servant."""

    type_ids: ClassVar[list[str]] = [TYPE_ID]

    def __init__(self) -> None:
        self.count = 0
        self.contexts: list[dict[str, str]] = []
        self.modes: set[int] = set()
        self.remote_addresses: set[tuple[Any, ...]] = set()

    async def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.contexts.append(dict(current.context))
        self.modes.add(int(getattr(current.mode, "value", current.mode)))
        if current.remote_address:
            self.remote_addresses.add(tuple(current.remote_address))
        return payload

    def fail_user(self, payload: bytes, current: aiocomm.Current) -> None:
        raise aiocomm.UserError(FAILURE_PAYLOAD)

    def fail_unknown(self, payload: bytes, current: aiocomm.Current) -> None:
        raise RuntimeError(UNKNOWN_TEXT)

    def fail_local(self, payload: bytes, current: aiocomm.Current) -> None:
        raise aiocomm.UnknownLocalError(LOCAL_TEXT)

    def fail_unknown_user(self, payload: bytes, current: aiocomm.Current) -> None:
        raise aiocomm.UnknownUserError(UNKNOWN_USER_TEXT)

    def fail_status(self, payload: bytes, current: aiocomm.Current) -> None:
        (status,) = struct.unpack_from("<i", payload, 0)
        raise aiocomm.DispatchError(f"fail_status {status}", status=status)

    def count_oneway(self, payload: bytes, current: aiocomm.Current) -> None:
        self.count += 1

    def get_count(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return struct.pack("<i", self.count)

    async def sleep(self, payload: bytes, current: aiocomm.Current) -> None:
        (ms,) = struct.unpack_from("<i", payload, 0)
        await asyncio.sleep(ms / 1000.0)


@dataclass
class AiocommServer:
    comm: aiocomm.Communicator
    adapter: aiocomm.ObjectAdapter
    servant: EchoServant
    proxy: str


async def start_aiocomm_server(comm: aiocomm.Communicator) -> AiocommServer:
    servant = EchoServant()
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    proxy = adapter.add(servant, "test")
    adapter.activate()
    return AiocommServer(comm, adapter, servant, str(proxy))


@pytest.fixture
async def aiocomm_server(comm: aiocomm.Communicator) -> AsyncIterator[AiocommServer]:
    ice38_python()  # skip before starting anything
    server = await start_aiocomm_server(comm)
    try:
        yield server
    finally:
        await server.adapter.destroy()


async def test_ice38_client_echo(aiocomm_server: AiocommServer) -> None:
    result = await run_ice38_client(aiocomm_server.proxy, "echo")
    assert f"echo_{NEAR_MAX}" in result["checks"]
    servant = aiocomm_server.servant
    assert {"k": "v", "empty": "", "\u00e9": "\u00fc" * 300} in servant.contexts
    assert servant.modes == {0, 2}
    assert {address[0] for address in servant.remote_addresses} == {"127.0.0.1"}


async def test_ice38_client_builtins(aiocomm_server: AiocommServer) -> None:
    result = await run_ice38_client(aiocomm_server.proxy, "builtins")
    assert set(result["info"]["ice_ids"]) == {"::Ice::Object", TYPE_ID}


@pytest.mark.parametrize("scenario", ["errors", "errors_local", "errors_status"])
async def test_ice38_client_errors(aiocomm_server: AiocommServer, scenario: str) -> None:
    result = await run_ice38_client(aiocomm_server.proxy, scenario)
    expected = {
        "errors": [1, 2, 3, 4, 7],
        "errors_local": [5, 6],
        "errors_status": EXTRA_STATUSES,
    }[scenario]
    for status in expected:
        assert any(c.startswith(f"status{status}_") for c in result["checks"]), result["checks"]


async def test_ice38_client_sees_an_authorize_refusal_as_unauthorized(
        comm: aiocomm.Communicator) -> None:
    ice38_python()
    servant = EchoServant()
    adapter = comm.create_object_adapter(
        "tcp -h 127.0.0.1 -p 0", authorize=lambda current: current.operation != "echo")
    proxy = adapter.add(servant, "test")
    adapter.activate()
    try:
        result = await run_ice38_client(str(proxy), "unauthorized")
    finally:
        await adapter.destroy()
    assert "status9_unauthorized" in result["checks"]
    assert "not authorized" in result["info"]["unauthorized_text"]
    assert servant.contexts == []  # echo never ran


async def test_ice38_client_oneway(aiocomm_server: AiocommServer) -> None:
    await run_ice38_client(aiocomm_server.proxy, "oneway")
    assert aiocomm_server.servant.count == 100


async def test_ice38_client_batch_oneway(aiocomm_server: AiocommServer) -> None:
    await run_ice38_client(aiocomm_server.proxy, "batch")
    assert aiocomm_server.servant.count == 50


async def test_ice38_client_concurrent(aiocomm_server: AiocommServer) -> None:
    # 200 ice_invokeAsync calls awaited together on Ice 3.8's asyncio integration.
    result = await run_ice38_client(aiocomm_server.proxy, "concurrent")
    assert "concurrent_echo_200" in result["checks"]
    assert "concurrent_sleep_20" in result["checks"]


async def test_ice38_client_default_servant(comm: aiocomm.Communicator) -> None:
    ice38_python()
    servant = EchoServant()
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    adapter.add_default_servant(servant, category="cat")
    adapter.activate()
    try:
        await run_ice38_client(str(adapter.create_proxy("cat/anything")), "builtins")
    finally:
        await adapter.destroy()


# ---------------------------------------------------------------------------
# (c) idle check and heartbeats (Ice 3.8)
# ---------------------------------------------------------------------------


async def test_idle_aiocomm_client_to_ice38_server(ice38_server_factory: Any) -> None:
    # Both sides: idle timeout IDLE_TIMEOUT, a heartbeat after half of it
    # without writing, and the connection dropped after all of it without
    # reading. Left idle for three idle timeouts, it must stay up: Ice reads
    # aiocomm's heartbeats, aiocomm reads Ice's.
    server: Ice38PeerServer = ice38_server_factory("--idle-timeout", str(IDLE_TIMEOUT))
    async with aiocomm.Communicator(
        idle_timeout=float(IDLE_TIMEOUT), invocation_timeout=30.0
    ) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"before-idle") == b"before-idle"
        before = comm.stats()
        samples = await watch_connections(comm, IDLE_SECONDS)
        after = comm.stats()
        assert await proxy.invoke("echo", b"after-idle") == b"after-idle"
        reasons = read_strings(await proxy.invoke("close_reasons"))
        assert reasons == [], f"Ice closed the connection: {reasons}"
        assert await get_int(proxy, "connection_count") == 1, "the connection was re-established"
        assert samples and set(samples) == {1}, f"aiocomm connections while idle: {samples}"
        assert comm.stats()["connections"] == 1
        # aiocomm heartbeated (~every 1 s) and read Ice's heartbeats (~every 1 s).
        sent = after["heartbeats_sent"] - before["heartbeats_sent"]
        received = after["messages_in"] - before["messages_in"]
        idle = f"{IDLE_SECONDS:g} s"
        assert sent >= IDLE_SECONDS / IDLE_TIMEOUT, f"aiocomm sent {sent} heartbeats in {idle}"
        assert received >= IDLE_SECONDS / IDLE_TIMEOUT, f"read {received} messages in {idle}"
        assert after["protocol_errors"] == before["protocol_errors"]


async def test_idle_ice38_client_to_aiocomm_server() -> None:
    ice38_python()
    async with aiocomm.Communicator(
        idle_timeout=float(IDLE_TIMEOUT), invocation_timeout=30.0
    ) as comm:
        server = await start_aiocomm_server(comm)
        before = comm.stats()
        client = asyncio.ensure_future(
            run_ice38_client(
                server.proxy,
                "idle",
                "--idle-timeout",
                str(IDLE_TIMEOUT),
                "--idle-seconds",
                str(IDLE_SECONDS),
            )
        )
        samples: list[int] = []
        while not client.done():
            samples.append(comm.stats()["connections"])
            await asyncio.sleep(0.1)
        result = await client
        after = comm.stats()
        await server.adapter.destroy()
    info = result["info"]
    assert info["same_connection"] and info["closed_after_seconds"] is None, info
    assert info["idle_timeout"] == str(IDLE_TIMEOUT)
    # The Ice client's two echo calls came over one connection...
    assert len(server.servant.remote_addresses) == 1, server.servant.remote_addresses
    # ...and aiocomm never had a second one (0 before Ice connects / after it leaves).
    assert max(samples) == 1 and samples.count(1) >= IDLE_SECONDS / 0.1 * 0.8, samples
    sent = after["heartbeats_sent"] - before["heartbeats_sent"]
    assert sent >= IDLE_SECONDS / IDLE_TIMEOUT, f"aiocomm sent {sent} heartbeats in {IDLE_SECONDS}s"
    assert after["protocol_errors"] == before["protocol_errors"]


# Negative controls: each side really drops an idle connection when the other
# heartbeats too slowly (idle timeout 60 s: a heartbeat after 30 s), so the two
# tests above would see a missing or ignored heartbeat.


async def test_idle_control_ice38_server_aborts_without_heartbeats(
    ice38_server_factory: Any,
) -> None:
    server: Ice38PeerServer = ice38_server_factory("--idle-timeout", str(IDLE_TIMEOUT))
    async with aiocomm.Communicator(idle_timeout=60.0, invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(IDLE_TIMEOUT + 1.5)
        assert await proxy.invoke("echo", b"2") == b"2"  # over a new connection
        assert await get_int(proxy, "connection_count") == 2
        reasons = read_strings(await proxy.invoke("close_reasons"))
        assert len(reasons) == 1 and "idle check" in reasons[0], reasons


async def test_idle_control_aiocomm_client_closes_without_heartbeats(
    ice38_server_factory: Any,
) -> None:
    server: Ice38PeerServer = ice38_server_factory("--idle-timeout", "60")
    async with aiocomm.Communicator(
        idle_timeout=float(IDLE_TIMEOUT), invocation_timeout=30.0
    ) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        samples = await watch_connections(comm, IDLE_TIMEOUT + 1.5)
        assert samples[-1] == 0, samples  # aiocomm dropped it
        assert await proxy.invoke("echo", b"2") == b"2"
        assert await get_int(proxy, "connection_count") == 2


@pytest.mark.parametrize(
    ("aiocomm_idle", "ice_idle"),
    [(60.0, IDLE_TIMEOUT), (float(IDLE_TIMEOUT), 60)],
    ids=["ice38_client_aborts", "aiocomm_server_closes"],
)
async def test_idle_control_ice38_client(aiocomm_idle: float, ice_idle: int) -> None:
    ice38_python()
    async with aiocomm.Communicator(idle_timeout=aiocomm_idle, invocation_timeout=30.0) as comm:
        server = await start_aiocomm_server(comm)
        result = await run_ice38_client(
            server.proxy,
            "idle",
            "--idle-timeout",
            str(ice_idle),
            "--idle-seconds",
            str(IDLE_TIMEOUT + 1.5),
            "--expect-reconnect",
        )
        await server.adapter.destroy()
    info = result["info"]
    assert not info["same_connection"]
    assert len(server.servant.remote_addresses) == 2, server.servant.remote_addresses
    if aiocomm_idle == 60.0:
        assert any("idle check" in r for r in info["close_reasons"]), info
