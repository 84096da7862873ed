"""grpc.aio over TLS: ``grpc_aio``'s generic raw-bytes handler on a port with
``grpc.ssl_server_credentials`` (``server.pem``), the client on a channel with
``grpc.ssl_channel_credentials(root_certificates=ca.pem)`` (gRPC's own BoringSSL)."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager

import grpc  # type: ignore[import-untyped,unused-ignore]

from bench.peers import grpc_aio
from bench.peers.common import Call, main, tls_dir


def _read(name: str) -> bytes:
    with open(os.path.join(tls_dir(), name), "rb") as file:
        return file.read()


def serve(host: str) -> AbstractAsyncContextManager[int]:
    credentials = grpc.ssl_server_credentials([(_read("server.key"), _read("server.pem"))])
    return grpc_aio.serve(host, credentials)


def connect(host: str, port: int) -> AbstractAsyncContextManager[Call]:
    credentials = grpc.ssl_channel_credentials(root_certificates=_read("ca.pem"))
    return grpc_aio.connect(host, port, credentials)


if __name__ == "__main__":
    main(serve, connect)
