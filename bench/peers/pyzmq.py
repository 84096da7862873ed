"""pyzmq (``zmq.asyncio``): a ROUTER server and a DEALER client.

Messages are ``[request id, payload]``; the client matches replies by id, so many
requests share one DEALER socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import zmq
import zmq.asyncio

from bench.peers.common import Call, Pending, main


async def _echo(router: zmq.asyncio.Socket) -> None:
    while True:
        frames = await router.recv_multipart(copy=False)
        await router.send_multipart(frames, copy=False)


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    context = zmq.asyncio.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"tcp://{host}:*")
    endpoint = router.getsockopt(zmq.LAST_ENDPOINT)
    assert isinstance(endpoint, bytes)
    port = int(endpoint.decode().rsplit(":", 1)[1])
    task = asyncio.create_task(_echo(router))
    try:
        yield port
    finally:
        task.cancel()
        router.close()
        context.term()


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    context = zmq.asyncio.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://{host}:{port}")
    pending = Pending()

    async def read_replies() -> None:
        try:
            while True:
                request_id, body = await dealer.recv_multipart()
                pending.resolve(int.from_bytes(request_id, "little"), body)
        except BaseException as exc:
            pending.fail_all(exc)
            raise

    async def call(payload: bytes) -> bytes:
        request_id, future = pending.new()
        await dealer.send_multipart((request_id.to_bytes(4, "little"), payload))
        return await future

    reader_task = asyncio.create_task(read_replies())
    try:
        yield call
    finally:
        reader_task.cancel()
        dealer.close()
        context.term()


if __name__ == "__main__":
    main(serve, connect)
