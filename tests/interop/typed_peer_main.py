"""Entry points of the typed Ice peers (both Ice versions): serve or call.

``typed_server.py`` and ``typed_client.py`` put the generated code on
``sys.path`` and call ``serve()`` or ``client()``; the Slice logic is in
``typed_peer.py``, the process plumbing in ``peer_serve.py``.
"""

from __future__ import annotations

import peer_serve
import typed_peer


def serve() -> int:
    return peer_serve.serve(peer_serve.properties(), typed_peer.add_servants)


def client(proxy: str, peer: str) -> int:
    with peer_serve.initialize(peer_serve.properties()) as communicator:
        return typed_peer.run_client(communicator, proxy, peer)
