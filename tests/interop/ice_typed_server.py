#!/usr/bin/python3
"""Ice 3.7 server of ``tests/slice/interop.ice`` for the typed interop test.

Run with the system interpreter that has Debian's ``python3-zeroc-ice``::

    /usr/bin/python3 tests/interop/ice_typed_server.py GENERATED_DIR

``GENERATED_DIR`` holds what Ice 3.7's ``slice2py`` made of ``interop.ice``
and ``interop_ice_only.ice``. Listens on ``tcp -h 127.0.0.1 -p 0``, prints
``READY <proxy of "test">`` and serves ``typed_peer.TestI`` (and a callback
object "callback") until stdin is closed or SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[1])

import typed_peer_main

if __name__ == "__main__":
    sys.exit(typed_peer_main.serve())
