"""Baseline: raw asyncio streams, frames of ``<u32 length><u32 request id><payload>``.

The least an RPC over one multiplexed TCP connection can do: the client matches
replies to requests by id, the server answers each frame as it reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

from bench.peers.common import Call, Pending, main

HEADER = struct.Struct("<II")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await reader.readexactly(HEADER.size)
            size, _ = HEADER.unpack(header)
            body = await reader.readexactly(size)
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    server = await asyncio.start_server(_handle, host, 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    reader, writer = await asyncio.open_connection(host, port)
    pending = Pending()

    async def read_replies() -> None:
        try:
            while True:
                size, request_id = HEADER.unpack(await reader.readexactly(HEADER.size))
                pending.resolve(request_id, await reader.readexactly(size))
        except BaseException as exc:
            pending.fail_all(exc)
            raise

    async def call(payload: bytes) -> bytes:
        request_id, future = pending.new()
        writer.write(HEADER.pack(len(payload), request_id) + payload)
        return await future

    reader_task = asyncio.create_task(read_replies())
    try:
        yield call
    finally:
        reader_task.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


if __name__ == "__main__":
    main(serve, connect)
