"""pycapnp (Cap'n Proto RPC, asyncio integration of pycapnp 2.x).

The schema ``bench/echo.capnp`` is loaded at run time: ``echo(data :Data) -> (data :Data)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import capnp  # type: ignore[import-untyped,unused-ignore]

from bench.peers.common import Call, main

SCHEMA = Path(__file__).resolve().parent.parent / "echo.capnp"


def _load() -> Any:
    return capnp.load(str(SCHEMA))


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    schema = _load()

    class EchoImpl(schema.Echo.Server):  # type: ignore[misc,name-defined]
        async def echo(self, data: bytes, **kwargs: Any) -> bytes:
            return data

    async def on_connection(stream: Any) -> None:
        await capnp.TwoPartyServer(stream, bootstrap=EchoImpl()).on_disconnect()

    async with capnp.kj_loop():
        server = await capnp.AsyncIoStream.create_server(on_connection, host, 0)
        async with server:
            yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    schema = _load()
    async with capnp.kj_loop():
        stream = await capnp.AsyncIoStream.create_connection(host=host, port=port)
        client = capnp.TwoPartyClient(stream)
        echo = client.bootstrap().cast_as(schema.Echo)

        async def call(payload: bytes) -> bytes:
            reply = await echo.echo(payload)
            return bytes(reply.data)

        try:
            yield call
        finally:
            stream.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.wait_closed(), 1.0)


if __name__ == "__main__":
    main(serve, connect)
