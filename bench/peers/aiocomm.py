"""aiocomm: ``adapter.add(servant, "echo")`` on the server, ``proxy.invoke("echo", payload)``.

Its defaults: the I/O threads read every socket (``loop_reads=False``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiocomm
from bench.peers.common import Call, main


class EchoServant:
    def echo(self, payload: bytes, current: Any) -> bytes:
        return payload


def port_of(endpoint: str) -> int:
    match = re.search(r"-p\s+(\d+)", endpoint)
    if match is None:
        raise RuntimeError(f"no port in endpoint {endpoint!r}")
    return int(match.group(1))


@contextlib.asynccontextmanager
async def serve(host: str, loop_reads: bool = False) -> AsyncIterator[int]:
    async with aiocomm.Communicator(loop_reads=loop_reads) as communicator:
        adapter = communicator.create_object_adapter(f"tcp -h {host} -p 0")
        adapter.add(EchoServant(), "echo")
        adapter.activate()
        yield port_of(adapter.endpoints[0])


@contextlib.asynccontextmanager
async def connect(host: str, port: int, loop_reads: bool = False) -> AsyncIterator[Call]:
    async with aiocomm.Communicator(loop_reads=loop_reads) as communicator:
        proxy = communicator.proxy(f"echo:tcp -h {host} -p {port}")
        await proxy.ping()  # connect outside the measurement

        async def call(payload: bytes) -> bytes:
            reply: bytes = await proxy.invoke("echo", payload)
            return reply

        call.counters = communicator.stats  # type: ignore[attr-defined]
        yield call


if __name__ == "__main__":
    main(serve, connect)
