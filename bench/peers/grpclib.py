"""grpclib (pure-Python HTTP/2 gRPC) with a codec that passes raw bytes through."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream

from bench.peers.common import Call, main

METHOD = "/bench.Echo/Echo"


class RawCodec(CodecBase):
    """Messages are ``bytes`` on both sides; nothing is (de)serialized."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


class EchoService:
    async def echo(self, stream: Stream[bytes, bytes]) -> None:
        request = await stream.recv_message()
        assert request is not None
        await stream.send_message(request)

    def __mapping__(self) -> dict[str, Handler]:
        return {METHOD: Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes)}


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    # proto=IPPROTO_TCP, or asyncio won't set TCP_NODELAY on accepted connections.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    server = Server([EchoService()], codec=RawCodec())
    await server.start(sock=listener)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    channel = Channel(host, port, codec=RawCodec())
    method: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(channel, METHOD, bytes, bytes)
    try:
        yield method
    finally:
        channel.close()


if __name__ == "__main__":
    main(serve, connect)
