"""``raw_streams`` over TLS exactly as it runs over TCP: one ``writer.write`` per frame,
so one TLS record and one send per frame (the coalescing baseline is ``raw_streams_tls``).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from bench.peers import raw_streams
from bench.peers.common import Call, main
from bench.peers.raw_streams_tls import client_context, server_context


def serve(host: str) -> AbstractAsyncContextManager[int]:
    return raw_streams.serve(host, ssl=server_context())


def connect(host: str, port: int) -> AbstractAsyncContextManager[Call]:
    return raw_streams.connect(host, port, ssl=client_context())


if __name__ == "__main__":
    main(serve, connect)
