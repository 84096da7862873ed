"""aiocomm's side of the raw echo interop tests, for either Ice version's peer.

The servant mirrors ``echo_servant.py`` (the Ice peers' one), so a peer
client runs the same scenarios against either; the helpers are what the
tests of an aiocomm client against an Ice peer server share.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from ice_wire import FAILURE_PAYLOAD, LOCAL_TEXT, TYPE_ID, UNKNOWN_TEXT, UNKNOWN_USER_TEXT
from peer_process import PeerServer

import aiocomm


class EchoServant:
    """The aiocomm counterpart of echo_servant.py's servant."""

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


async def start_aiocomm_server(comm: aiocomm.Communicator, **options: Any) -> AiocommServer:
    """An adapter serving an EchoServant as "test" (options: e.g. ``authorize``)."""
    servant = EchoServant()
    adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0", **options)
    proxy = adapter.add(servant, "test")
    adapter.activate()
    return AiocommServer(comm, adapter, servant, str(proxy))


def ice_proxy(
    comm: aiocomm.Communicator,
    server: PeerServer,
    identity: str = "test",
    facet: str | None = None,
) -> aiocomm.Proxy:
    return comm.proxy(server.proxy_for(identity, facet))


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


# identity, facet, operation, payload, error class name, reply status, text in the message
DispatchErrorCase = tuple[str, str | None, str, bytes, str, int, str | None]


async def check_dispatch_error(
    comm: aiocomm.Communicator,
    server: PeerServer,
    case: DispatchErrorCase,
) -> None:
    """An aiocomm call the Ice server fails: the error it raises, then a working call."""
    identity, facet, operation, payload, error, status, text = case
    error_class = getattr(aiocomm, error)
    with pytest.raises(aiocomm.DispatchError) as info:
        await ice_proxy(comm, server, identity, facet).invoke(operation, payload)
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
    assert await ice_proxy(comm, server).invoke("echo", b"after") == b"after"
