"""Fixtures for the ZeroC Ice 3.7 interoperability tests.

The Ice peers (``ice_peer_server.py``, ``ice_peer_client.py``) run as
subprocesses of the system interpreter with Debian's ``python3-zeroc-ice``
(``/usr/bin/python3``; override with ``AIOCOMM_ICE_PYTHON``). When Ice is not
importable there the tests are skipped, except under ``CI=true`` where a
missing peer fails them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from peer_process import PeerServer, run_peer_client
from peer_pythons import ICE_PYTHON, require_ice

import aiocomm

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "ice_peer_server.py"
CLIENT_SCRIPT = HERE / "ice_peer_client.py"


def IcePeerServer(*args: str) -> PeerServer:
    """A running ``ice_peer_server.py`` subprocess."""
    return PeerServer("Ice 3.7 peer", ICE_PYTHON, SERVER_SCRIPT, *args)


@pytest.fixture(scope="session")
def ice_peer() -> None:
    """The Ice peer is usable (else skip, or fail under CI=true)."""
    require_ice()


@pytest.fixture(scope="session")
def ice_server(ice_peer: None) -> Iterator[PeerServer]:
    """One Ice 3.7 server for the session (its state: a oneway counter)."""
    server = IcePeerServer()
    try:
        yield server
    finally:
        rc = server.stop()
        stderr = server.stderr_text()
        server.close()
    assert rc == 0, f"Ice peer server exited with {rc}:\n{stderr}"


@pytest.fixture
def ice_server_factory(ice_peer: None) -> Iterator[Callable[..., PeerServer]]:
    """Start extra Ice servers (e.g. with ACM options); all stopped at teardown."""
    servers: list[PeerServer] = []

    def start(*args: str) -> PeerServer:
        server = IcePeerServer(*args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        server.close()


IceClientRunner = Callable[[str, str], Awaitable[dict[str, Any]]]


async def run_ice_client(proxy: str, scenario: str) -> dict[str, Any]:
    """Run one ``ice_peer_client.py`` scenario; fails the test unless it succeeds."""
    command = [ICE_PYTHON, str(CLIENT_SCRIPT), proxy, scenario]
    return await run_peer_client("Ice 3.7 peer", command)


@pytest.fixture
def ice_client(ice_peer: None) -> IceClientRunner:
    """``await ice_client(proxy_string, scenario)`` -> the client's JSON result."""
    return run_ice_client


@pytest.fixture
async def comm() -> AsyncIterator[aiocomm.Communicator]:
    """An aiocomm communicator on the test's event loop (asyncio or uvloop)."""
    async with aiocomm.Communicator(invocation_timeout=30.0) as communicator:
        yield communicator
