"""Server of ``tests/slice/interop.ice`` for the typed interop test, Ice 3.7 or 3.8.

Run with the interpreter of either Ice peer (Debian's ``/usr/bin/python3``
for 3.7, the Ice 3.8 venv for 3.8)::

    python tests/interop/typed_server.py GENERATED_DIR

``GENERATED_DIR`` holds what that Ice version's ``slice2py`` made of
``interop.ice`` and ``interop_ice_only.ice``. Listens on
``tcp -h 127.0.0.1 -p 0``, prints ``READY <proxy of "test">`` and serves
``typed_peer.TestI`` (and a callback object "callback") until stdin is closed
or SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[1])

import typed_peer_main

if __name__ == "__main__":
    sys.exit(typed_peer_main.serve())
