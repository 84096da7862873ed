"""Ice 3.7's ACM (active connection management) against aiocomm's heartbeats.

Ice 3.8 replaced ACM with the idle check of ``test_ice38_interop.py``; the
raw calls both versions share are in ``test_ice_interop.py``.

Each case: a connection, 2.8 s of silence, a second call, and how many
connections the Ice server has seen by then.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest
from aiocomm_echo import ice_proxy
from echo_peers import EchoPeer
from peer_process import PeerServer

import aiocomm

ACM_CASES = [
    # Ice sends a validate-connection message on every ACM tick (~0.5 s) and
    # never closes: aiocomm must take them at any time, on the same connection.
    pytest.param(("1", "3", "0"), None, 1, id="accepts_ice_heartbeats"),
    # Ice (no heartbeats of its own) gracefully closes a connection on which
    # it has read nothing for 2 s. aiocomm with idle_timeout=3 writes a
    # heartbeat whenever it has written nothing for 1.5 s, so Ice keeps the
    # connection through a 2.8 s silence (aiocomm itself closes a connection
    # only after idle_timeout without receiving anything).
    pytest.param(("2", "0", "1"), 3.0, 1, id="heartbeats_keep_ice_connection_open"),
    # Ice (no heartbeats) gracefully closes the connection after ~1-1.5 s
    # idle; aiocomm (idle_timeout 60: no heartbeat yet) must then reconnect.
    pytest.param(("1", "0", "1"), None, 2, id="reconnect_after_ice_closes_idle_connection"),
]


@pytest.mark.parametrize(("acm", "idle_timeout", "connections"), ACM_CASES)
async def test_acm(
    ice37: EchoPeer,
    peer_servers: Callable[..., PeerServer],
    acm: tuple[str, str, str],
    idle_timeout: float | None,
    connections: int,
) -> None:
    timeout, heartbeat, close = acm
    server = peer_servers(
        ice37, "--acm-timeout", timeout, "--acm-heartbeat", heartbeat, "--acm-close", close
    )
    options = {} if idle_timeout is None else {"idle_timeout": idle_timeout}
    async with aiocomm.Communicator(invocation_timeout=30.0, **options) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        count = await proxy.invoke("connection_count")
        assert count == struct.pack("<i", connections), "connections the Ice server saw"
