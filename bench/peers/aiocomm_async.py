"""aiocomm with the servant an asyncio user writes: ``async def echo``.

The drain runs the coroutine's first step itself; an echo never suspends, so
it is answered there, with no task (see cpp/binding/native_dispatch.cpp).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiocomm
from bench.peers import aiocomm as plain
from bench.peers.common import main


class AsyncEchoServant:
    async def echo(self, payload: bytes, current: Any) -> bytes:
        return payload


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    async with aiocomm.Communicator() as communicator:
        adapter = communicator.create_object_adapter(f"tcp -h {host} -p 0")
        adapter.add(AsyncEchoServant(), "echo")
        adapter.activate()
        yield plain.port_of(adapter.endpoints[0])


connect = plain.connect

if __name__ == "__main__":
    main(serve, connect)
