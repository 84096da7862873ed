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
async def serve(host: str, credentials: Any = None) -> AsyncIterator[int]:
    """With ``credentials`` (``grpc.ssl_server_credentials``) the port is a TLS one."""
    server = grpc.aio.server(options=OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    if credentials is None:
        port = server.add_insecure_port(f"{host}:0")
    else:
        port = server.add_secure_port(f"{host}:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@contextlib.asynccontextmanager
async def connect(host: str, port: int, credentials: Any = None) -> AsyncIterator[Call]:
    """With ``credentials`` (``grpc.ssl_channel_credentials``) the channel is a TLS one."""
    target = f"{host}:{port}"
    channel = (grpc.aio.insecure_channel(target, options=OPTIONS) if credentials is None
               else grpc.aio.secure_channel(target, credentials, options=OPTIONS))
    async with channel:
        method = channel.unary_unary(METHOD)

        async def call(payload: bytes) -> bytes:
            reply = await method(payload)
            assert isinstance(reply, bytes)
            return reply

        yield call


if __name__ == "__main__":
    main(serve, connect)
