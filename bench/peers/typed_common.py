"""What the typed echo peers share (bench/typed.py): the records and their encoded size.

The common ``--payloads`` option means the number of records here: 1 calls
``Bench::Echo::echoRec`` with one ``Rec``, N > 1 calls ``echoRecs`` with N of them.
A typed peer's ``call(payload)`` echoes the records, checks the reply's size and last
record, and returns ``payload``, so ``bench.peers.common.measure`` drives it unchanged.
Standard library only: the Ice peer runs this under Debian's ``/usr/bin/python3``.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SLICE = Path(__file__).resolve().parent.parent / "typed_echo.ice"

S1 = "hello typed world"
S2 = "0123456789abcdef"
INTS = [1, -2, 3, -4, 5, -6, 7, 1 << 30]


def make_records(count: int, rec: Callable[..., Any], kind: Any) -> list[Any]:
    return [
        rec(a=i, b=-i, c=i << 33, d=-(i << 20), e=i * 0.5, f=-i * 0.25, s1=S1, s2=S2,
            kind=kind, ints=list(INTS))
        for i in range(count)
    ]


def _size_prefix(n: int) -> int:
    return 1 if n < 255 else 5


def encoded_size(count: int) -> int:
    """Bytes of the encapsulation content of one request (the raw echo sends as many)."""
    one = 4 + 4 + 8 + 8 + 8 + 8 + _size_prefix(len(S1)) + len(S1.encode())
    one += _size_prefix(len(S2)) + len(S2.encode()) + 1 + _size_prefix(len(INTS)) + 4 * len(INTS)
    return one if count == 1 else _size_prefix(count) + count * one


def import_generated(command: list[str]) -> None:
    """Generate typed_echo.ice's Python with ``command`` (a slice2py) and import ``Bench``.

    The files are deleted once imported: every module is in memory by then.
    """
    out = tempfile.mkdtemp(prefix="bench-typed-")
    try:
        subprocess.run([*command, "--output-dir", out, str(SLICE)], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        sys.path.insert(0, out)
        try:
            importlib.import_module("Bench")
        finally:
            sys.path.remove(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
