"""Client of ``tests/slice/interop.ice`` for the typed interop test, Ice 3.7 or 3.8.

    python tests/interop/typed_client.py GENERATED_DIR PROXY aiocomm|ice

Run with either Ice peer's interpreter. Calls every operation of the
``Interop::Test`` server at PROXY (``aiocomm``: an aiocomm server; ``ice``:
an Ice peer, to check the peers themselves) and prints one JSON line:
``{"ok": ..., "checks": {name: "ok" or why}}`` (``typed_peer.run_client``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[1])  # the generated Interop package, before typed_peer

import peer_serve
import typed_peer

if __name__ == "__main__":
    with peer_serve.initialize(peer_serve.properties()) as communicator:
        sys.exit(typed_peer.run_client(communicator, sys.argv[2], sys.argv[3]))
