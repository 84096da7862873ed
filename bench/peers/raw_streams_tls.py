"""Baseline over TLS, as a skilled user writes it: ``raw_streams``' frames and code on
``asyncio.start_server(ssl=ctx)`` and ``asyncio.open_connection(ssl=ctx)``, contexts from
``ssl.create_default_context`` (the server loads ``server.pem``; the client trusts
``ca.pem`` and checks the address), and both ends coalescing the frames of one loop
iteration into one write. The TLS record layer runs in the event loop (asyncio's
``SSLProtocol`` or uvloop's), and it costs per write: one record and one send per frame
(``raw_streams_tls_unbatched``) runs several times slower at 64 in flight.
"""

from __future__ import annotations

import os
import ssl
from contextlib import AbstractAsyncContextManager

from bench.peers import raw_streams
from bench.peers.common import Call, main, tls_dir


def server_context() -> ssl.SSLContext:
    directory = tls_dir()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(directory, "server.pem"),
                            os.path.join(directory, "server.key"))
    return context


def client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.path.join(tls_dir(), "ca.pem"))


def serve(host: str) -> AbstractAsyncContextManager[int]:
    return raw_streams.serve(host, ssl=server_context(), coalesce=True)


def connect(host: str, port: int) -> AbstractAsyncContextManager[Call]:
    return raw_streams.connect(host, port, ssl=client_context(), coalesce=True)


if __name__ == "__main__":
    main(serve, connect)
