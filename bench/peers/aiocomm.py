"""aiocomm as its users write it: an ``async def echo`` servant on the server,
``proxy.invoke("echo", payload)`` on the client, every option at its default
(so the loop reads its own sockets).

The drain runs the coroutine's first step itself; an echo never suspends, so
it is answered there, with no task (see cpp/binding/native_dispatch.cpp).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiocomm
from bench.peers.common import Call, main

# Room for the 1 MiB cells: a message is the payload plus its headers.
MESSAGE_SIZE_MAX = 4 << 20


class AsyncEchoServant:
    async def echo(self, payload: bytes, current: Any) -> bytes:
        return payload


def port_of(endpoint: str) -> int:
    match = re.search(r"-p\s+(\d+)", endpoint)
    if match is None:
        raise RuntimeError(f"no port in endpoint {endpoint!r}")
    return int(match.group(1))


@contextlib.asynccontextmanager
async def serve(host: str, servant: object | None = None, loop_reads: bool | None = None,
                tls: aiocomm.TLS | None = None) -> AsyncIterator[int]:
    """With ``tls`` the adapter listens on an ``ssl`` endpoint instead of ``tcp``."""
    async with aiocomm.Communicator(loop_reads=loop_reads, message_size_max=MESSAGE_SIZE_MAX,
                                    tls=tls) as communicator:
        transport = "tcp" if tls is None else "ssl"
        adapter = communicator.create_object_adapter(f"{transport} -h {host} -p 0")
        adapter.add(servant if servant is not None else AsyncEchoServant(), "echo")
        adapter.activate()
        yield port_of(adapter.endpoints[0])


@contextlib.asynccontextmanager
async def connect(host: str, port: int, loop_reads: bool | None = None,
                  tls: aiocomm.TLS | None = None) -> AsyncIterator[Call]:
    async with aiocomm.Communicator(loop_reads=loop_reads, message_size_max=MESSAGE_SIZE_MAX,
                                    tls=tls) as communicator:
        transport = "tcp" if tls is None else "ssl"
        proxy = communicator.proxy(f"echo:{transport} -h {host} -p {port}")
        await proxy.ping()  # connect outside the measurement

        async def call(payload: bytes) -> bytes:
            reply: bytes = await proxy.invoke("echo", payload)
            return reply

        call.counters = communicator.stats  # type: ignore[attr-defined]
        yield call


if __name__ == "__main__":
    main(serve, connect)
