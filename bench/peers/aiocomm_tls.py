"""aiocomm over TLS: the headline peer (an ``async def echo`` servant, default options)
on an ``ssl`` endpoint. Server-only authentication, as a public service runs: the server
presents ``server.pem``, the client checks its chain against ``ca.pem`` and its address,
and sends no certificate. ``--tls DIR`` names the certificates (tests/make_test_certs.sh).
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager

import aiocomm
from bench.peers import aiocomm as headline
from bench.peers.common import Call, main, tls_dir


def server_tls() -> aiocomm.TLS:
    directory = tls_dir()
    return aiocomm.TLS(certfile=os.path.join(directory, "server.pem"),
                       keyfile=os.path.join(directory, "server.key"), verify_peer=0)


def client_tls() -> aiocomm.TLS:
    return aiocomm.TLS(cafile=os.path.join(tls_dir(), "ca.pem"))


def serve(host: str) -> AbstractAsyncContextManager[int]:
    return headline.serve(host, tls=server_tls())


def connect(host: str, port: int) -> AbstractAsyncContextManager[Call]:
    return headline.connect(host, port, tls=client_tls())


if __name__ == "__main__":
    main(serve, connect)
