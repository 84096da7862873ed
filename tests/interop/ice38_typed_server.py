#!/usr/bin/env python3
"""Ice 3.8 server of ``tests/slice/interop.ice`` for the typed interop test.

Run with an interpreter that has ZeroC Ice 3.8 (see ``test_ice38_interop.py``)::

    python tests/interop/ice38_typed_server.py GENERATED_DIR

``GENERATED_DIR`` holds what Ice 3.8's ``slice2py`` made of ``interop.ice``
and ``interop_ice_only.ice``. Otherwise as ``ice_typed_server.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[1])

import typed_peer_main

if __name__ == "__main__":
    sys.exit(typed_peer_main.serve())
