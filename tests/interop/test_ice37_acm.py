"""Ice 3.7's ACM (active connection management) against aiocomm's heartbeats.

Ice 3.8 replaced ACM with the idle check of ``test_ice38_interop.py``; the
raw calls both versions share are in ``test_ice_interop.py``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from aiocomm_echo import ice_proxy
from echo_peers import EchoPeer
from peer_process import PeerServer

import aiocomm


async def test_accepts_ice_heartbeats(
    ice37: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    # Ice sends a validate-connection message on every ACM tick (~0.5 s) and
    # never closes: aiocomm must take them at any time, on the same connection.
    server = peer_servers(ice37, "--acm-timeout", "1", "--acm-heartbeat", "3", "--acm-close", "0")
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        assert await proxy.invoke("connection_count") == struct.pack("<i", 1)


async def test_heartbeats_keep_ice_connection_open(
    ice37: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    # Ice (no heartbeats of its own) gracefully closes a connection on which
    # it has read nothing for 2 s. aiocomm with idle_timeout=3 writes a
    # heartbeat whenever it has written nothing for 1.5 s, so Ice keeps the
    # connection through a 2.8 s silence (aiocomm itself closes a connection
    # only after idle_timeout without receiving anything).
    server = peer_servers(ice37, "--acm-timeout", "2", "--acm-heartbeat", "0", "--acm-close", "1")
    async with aiocomm.Communicator(idle_timeout=3.0, invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        count = await proxy.invoke("connection_count")
        assert count == struct.pack("<i", 1), "the connection was closed and re-established"


async def test_reconnect_after_ice_closes_idle_connection(
    ice37: EchoPeer, peer_servers: Callable[..., PeerServer]
) -> None:
    # Ice (no heartbeats) gracefully closes the connection after ~1-1.5 s
    # idle; aiocomm (idle_timeout 60: no heartbeat yet) must then reconnect.
    server = peer_servers(ice37, "--acm-timeout", "1", "--acm-heartbeat", "0", "--acm-close", "1")
    async with aiocomm.Communicator(invocation_timeout=30.0) as comm:
        proxy = ice_proxy(comm, server)
        assert await proxy.invoke("echo", b"1") == b"1"
        await asyncio.sleep(2.8)
        assert await proxy.invoke("echo", b"2") == b"2"
        assert await proxy.invoke("connection_count") == struct.pack("<i", 2)
