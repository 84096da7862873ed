"""Fixtures of the Ice interoperability tests, for both Ice versions' peers.

The peers run as subprocesses of their own interpreters (``peer_pythons.py``
says which, and what a test does without one: skip, or fail under CI).
``echo_peer`` runs a test once per Ice version; ``ice37`` and ``ice38`` pin
one version, for the tests of what only that version has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

# The shared helpers assert too: rewritten, their failures say what differed.
pytest.register_assert_rewrite("aiocomm_echo", "echo_peers")

from aiocomm_echo import AiocommServer, start_aiocomm_server  # noqa: E402
from echo_peers import EchoPeer  # noqa: E402
from peer_process import PeerServer  # noqa: E402
from peer_pythons import ice38_python, peer_python, require_ice  # noqa: E402

import aiocomm  # noqa: E402


@pytest.fixture(scope="session")
def ice_peer() -> None:
    """The Ice 3.7 peer is usable (else skip, or fail under CI=true)."""
    require_ice()


@pytest.fixture(scope="session")
def ice37() -> EchoPeer:
    return EchoPeer("ice37", require_ice())


@pytest.fixture(scope="session")
def ice38() -> EchoPeer:
    return EchoPeer("ice38", ice38_python())


@pytest.fixture(scope="session", params=["ice37", "ice38"])
def echo_peer(request: pytest.FixtureRequest) -> EchoPeer:
    """Each Ice version's echo peer in turn."""
    return EchoPeer(request.param, peer_python(request.param))


@pytest.fixture(scope="session")
def echo_server(echo_peer: EchoPeer) -> Iterator[PeerServer]:
    """One Ice server of that version for the session (its state: a oneway counter)."""
    server = echo_peer.start_server()
    try:
        yield server
    finally:
        failure = server.stop_and_check()
    assert failure is None, failure


@pytest.fixture
def peer_servers() -> Iterator[Callable[..., PeerServer]]:
    """``start(peer, *options)``: extra Ice servers (e.g. with ACM or idle
    options); all stopped at teardown, where any that failed (and was not
    killed on purpose) fails the test."""
    servers: list[PeerServer] = []

    def start(peer: EchoPeer, *args: str) -> PeerServer:
        server = peer.start_server(*args)
        servers.append(server)
        return server

    yield start
    failures = [f for f in (server.stop_and_check() for server in servers) if f is not None]
    assert not failures, "\n".join(failures)


@pytest.fixture
async def comm() -> AsyncIterator[aiocomm.Communicator]:
    """An aiocomm communicator on the test's event loop (asyncio or uvloop)."""
    async with aiocomm.Communicator(invocation_timeout=30.0) as communicator:
        yield communicator


@pytest.fixture
async def aiocomm_server(comm: aiocomm.Communicator) -> AsyncIterator[AiocommServer]:
    """An aiocomm server of an EchoServant, for the Ice peer clients."""
    server = await start_aiocomm_server(comm)
    try:
        yield server
    finally:
        await server.adapter.destroy()
