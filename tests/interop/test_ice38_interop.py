"""What only ZeroC Ice 3.8 has, against aiocomm (``zeroc-ice`` 3.8 for Python).

The raw calls both Ice versions share run against Ice 3.8 too, in
``test_ice_interop.py``; here:

(a) an aiocomm client gets Ice 3.8's reply statuses above 7 from
    ``ice38_peer_server.py`` and reads a 3.7-style proxy string;
(b) ``ice38_peer_client.py`` sees aiocomm's statuses above 7, an authorize
    refusal among them;
(c) idle check and heartbeats, Ice 3.8's replacement for ACM, both ways: with
    ``Ice.Connection.*.IdleTimeout=4`` on the Ice side and
    ``Communicator(idle_timeout=4.0)`` on ours, a connection left idle for 12 s
    must stay up. Ice aborts a connection on which it has read nothing for its
    idle timeout, so aiocomm must heartbeat; aiocomm closes a connection on
    which it has read nothing for its idle timeout, so it must accept Ice's
    heartbeats. Negative controls show each side really does close an idle
    connection when the other side's heartbeats are too slow, so the positive
    tests can see a failure.

Where the Ice 3.8 interpreter comes from, and when its absence skips or
fails these tests, is ``peer_pythons.py``'s to say. Every async test runs on
the default asyncio loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable

import pytest
from aiocomm_echo import (
    AiocommServer,
    check_dispatch_error,
    get_int,
    ice_proxy,
    start_aiocomm_server,
)
from echo_peers import EchoPeer
from ice_wire import EXTRA_STATUSES, read_strings
from peer_process import PeerServer

import aiocomm

# Each side heartbeats after half of it without writing, and drops the
# connection after all of it without reading: a 2x margin that timer
# granularity and a loaded 2-core machine eat into (2 s once lost a
# connection in CI), so the idle timeout is 4 s.
IDLE_TIMEOUT = 4  # seconds, on both sides
IDLE_SECONDS = 3.0 * IDLE_TIMEOUT  # how long the connection is left idle: three idle timeouts


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


# conftest's session server, of Ice 3.8 only.
on_ice38_server = pytest.mark.parametrize("echo_peer", ["ice38"], indirect=True)


@on_ice38_server
async def test_proxy_in_ice37_style(comm: aiocomm.Communicator, echo_server: PeerServer) -> None:
    # Ice 3.8 prints "test:tcp -h 127.0.0.1 -p N"; the 3.7 style with an
    # endpoint timeout still parses (Ice 3.8 ignores -t).
    await comm.proxy(f"test -t -e 1.1:{echo_server.endpoints} -t 60000").ping()


@on_ice38_server
@pytest.mark.parametrize("status", EXTRA_STATUSES, ids=[f"status{s}" for s in EXTRA_STATUSES])
async def test_dispatch_errors_above_7(
    comm: aiocomm.Communicator, echo_server: PeerServer, status: int
) -> None:
    # Ice 3.8's Unauthorized (9) is PermissionDeniedError, a DispatchError.
    error = "PermissionDeniedError" if status == 9 else "DispatchError"
    case = ("test", None, "fail_status", struct.pack("<i", status), error, status,
            f"fail_status {status}")
    await check_dispatch_error(comm, echo_server, case)


# ---------------------------------------------------------------------------
# (b) Ice 3.8 client -> aiocomm server
# ---------------------------------------------------------------------------


async def test_ice38_client_errors_status(ice38: EchoPeer, aiocomm_server: AiocommServer) -> None:
    result = await ice38.run_client(aiocomm_server.proxy, "errors_status")
    for status in EXTRA_STATUSES:
        assert any(c.startswith(f"status{status}_") for c in result["checks"]), result["checks"]


async def test_ice38_client_sees_an_authorize_refusal_as_unauthorized(
    ice38: EchoPeer, comm: aiocomm.Communicator
) -> None:
    server = await start_aiocomm_server(
        comm, authorize=lambda current: current.operation != "echo"
    )
    try:
        result = await ice38.run_client(server.proxy, "unauthorized")
    finally:
        await server.adapter.destroy()
    assert "status9_unauthorized" in result["checks"]
    assert "not authorized" in result["info"]["unauthorized_text"]
    assert server.servant.contexts == []  # echo never ran


# ---------------------------------------------------------------------------
# (c) idle check and heartbeats (Ice 3.8)
# ---------------------------------------------------------------------------


async def test_idle_aiocomm_client_to_ice38_server(
    ice38: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    # Both sides: idle timeout IDLE_TIMEOUT, a heartbeat after half of it
    # without writing, and the connection dropped after all of it without
    # reading. Left idle for three idle timeouts, it must stay up: Ice reads
    # aiocomm's heartbeats, aiocomm reads Ice's.
    server = peer_servers(ice38, "--idle-timeout", str(IDLE_TIMEOUT))
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


async def test_idle_ice38_client_to_aiocomm_server(ice38: EchoPeer) -> None:
    async with aiocomm.Communicator(
        idle_timeout=float(IDLE_TIMEOUT), invocation_timeout=30.0
    ) as comm:
        server = await start_aiocomm_server(comm)
        before = comm.stats()
        client = asyncio.ensure_future(
            ice38.run_client(
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
    ice38: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    server = peer_servers(ice38, "--idle-timeout", str(IDLE_TIMEOUT))
    async with aiocomm.Communicator(idle_timeout=60.0, invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(IDLE_TIMEOUT + 1.5)
        assert await proxy.invoke("echo", b"2") == b"2"  # over a new connection
        assert await get_int(proxy, "connection_count") == 2
        reasons = read_strings(await proxy.invoke("close_reasons"))
        assert len(reasons) == 1 and "idle check" in reasons[0], reasons


async def test_idle_control_aiocomm_client_closes_without_heartbeats(
    ice38: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    server = peer_servers(ice38, "--idle-timeout", "60")
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
async def test_idle_control_ice38_client(
    ice38: EchoPeer, aiocomm_idle: float, ice_idle: int
) -> None:
    async with aiocomm.Communicator(idle_timeout=aiocomm_idle, invocation_timeout=30.0) as comm:
        server = await start_aiocomm_server(comm)
        result = await ice38.run_client(
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
