"""grpcio's ``grpc.aio``: a generic handler on raw bytes (no protobuf, no codegen)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import grpc.aio  # type: ignore[import-untyped,unused-ignore]

from bench.peers.common import Call, main

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"
# One connection, as for every other peer; no per-message size cap getting in the way.
OPTIONS = [("grpc.max_receive_message_length", 1 << 24), ("grpc.so_reuseport", 0)]


async def _echo(request: bytes, context: Any) -> bytes:
    return request


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    server = grpc.aio.server(options=OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    async with grpc.aio.insecure_channel(f"{host}:{port}", options=OPTIONS) as channel:
        method = channel.unary_unary(METHOD)

        async def call(payload: bytes) -> bytes:
            reply = await method(payload)
            assert isinstance(reply, bytes)
            return reply

        yield call


if __name__ == "__main__":
    main(serve, connect)
