"""A server communicator with one adapter, and a client communicator: the
fixture several dispatch tests build on (each subclasses Pair for its own
helpers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiocomm

LIMIT = 30.0  # seconds; for what must happen, far above its real time


class Pair:
    def __init__(self, server: aiocomm.Communicator, client: aiocomm.Communicator,
                 adapter: aiocomm.ObjectAdapter) -> None:
        self.server, self.client, self.adapter = server, client, adapter

    def proxy(self, identity: str) -> aiocomm.Proxy:
        return self.client.proxy(f"{identity}:{self.adapter.endpoints[0]}")


P = TypeVar("P", bound=Pair)


@contextlib.asynccontextmanager
async def open_pair(kind: type[P], *, activate: bool = True,
                    server: dict[str, Any] | None = None,
                    client: dict[str, Any] | None = None) -> AsyncIterator[P]:
    """Both communicators (their options `server` and `client`; the client's
    invocation_timeout defaults to LIMIT), the adapter activated unless told
    not to; destroyed at the end, the server's destroy bounded by LIMIT."""
    server_comm = aiocomm.Communicator(**(server or {}))
    client_comm = aiocomm.Communicator(**{"invocation_timeout": LIMIT, **(client or {})})
    try:
        adapter = server_comm.create_object_adapter()
        if activate:
            adapter.activate()
        yield kind(server_comm, client_comm, adapter)
    finally:
        await client_comm.destroy()
        await asyncio.wait_for(server_comm.destroy(), LIMIT)
