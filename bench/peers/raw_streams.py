"""Baseline: raw asyncio streams, frames of ``<u32 length><u32 request id><payload>``.

The least an RPC over one multiplexed TCP connection can do: the client matches
replies to requests by id, the server answers each frame as it reads it.
``ssl`` (server and client) runs the same over TLS; ``coalesce`` gathers the frames
written in one loop iteration into one write (the TLS peers: one record, one send,
instead of one per frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
from collections.abc import AsyncIterator, Callable
from ssl import SSLContext

from bench.peers.common import Call, Pending, main

HEADER = struct.Struct("<II")


class Coalescer:
    """Frames written during one loop iteration leave in one ``writer.write``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._frames: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, frame: bytes) -> None:
        if not self._frames:
            self._loop.call_soon(self._flush)
        self._frames.append(frame)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self._writer.is_closing():
            self._writer.write(b"".join(frames))


def _writer_of(writer: asyncio.StreamWriter, coalesce: bool) -> Callable[[bytes], None]:
    return Coalescer(writer).write if coalesce else writer.write


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  coalesce: bool = False) -> None:
    write = _writer_of(writer, coalesce)
    try:
        while True:
            header = await reader.readexactly(HEADER.size)
            size, _ = HEADER.unpack(header)
            body = await reader.readexactly(size)
            write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serve(host: str, ssl: SSLContext | None = None,
                coalesce: bool = False) -> AsyncIterator[int]:
    handle = functools.partial(_handle, coalesce=coalesce) if coalesce else _handle
    server = await asyncio.start_server(handle, host, 0, ssl=ssl)
    async with server:
        yield server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def connect(host: str, port: int, ssl: SSLContext | None = None,
                  coalesce: bool = False) -> AsyncIterator[Call]:
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
    pending = Pending()
    write = _writer_of(writer, coalesce)

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
        write(HEADER.pack(len(payload), request_id) + payload)
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
