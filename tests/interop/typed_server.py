"""Server of ``tests/slice/interop.ice`` for the typed interop test, Ice 3.7 or 3.8.

Run with the interpreter of either Ice peer (Debian's ``/usr/bin/python3``
for 3.7, the Ice 3.8 venv for 3.8)::

    python tests/interop/typed_server.py GENERATED_DIR

``GENERATED_DIR`` holds what that Ice version's ``slice2py`` made of
``interop.ice`` and ``interop_ice_only.ice``. Serves ``typed_peer.TestI`` as
"test" (and a callback object "callback") as ``peer_serve.serve`` does:
``READY <proxy>`` first, until stdin is closed or SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[1])  # the generated Interop package, before typed_peer

import peer_serve
import typed_peer

if __name__ == "__main__":
    sys.exit(peer_serve.serve(peer_serve.properties(), typed_peer.add_servants))
