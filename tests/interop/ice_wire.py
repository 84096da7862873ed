"""What the raw interop peers and the tests agree on, written once.

The echo peers (``ice_peer_*.py`` for Ice 3.7, ``ice38_peer_*.py`` for Ice
3.8) and the tests that drive them (``test_ice_interop.py``,
``test_ice38_interop.py``) all import this module: the peers under an Ice
interpreter, the tests under aiocomm's. So it is pure Python, importing
neither Ice nor aiocomm, and a constant changed here changes on every side.
"""

from __future__ import annotations

import struct

TYPE_ID = "::Test::Echo"
TYPE_IDS = ["::Ice::Object", TYPE_ID]  # Ice answers ice_ids sorted
ENCODING = b"\x01\x01"

# A well-formed encoding-1.1 user exception ::Test::Failure { string reason; }
# in the sliced format: slice flags (type id string | slice size | last slice),
# type id, slice size (int, counts itself), members.
_REASON = b"\x0cfail_user ok"  # string "fail_user ok"
FAILURE_PAYLOAD = b"\x31" + b"\x0e::Test::Failure" + struct.pack("<i", 4 + len(_REASON)) + _REASON
UNKNOWN_TEXT = "fail_unknown: deliberate Python error"
LOCAL_TEXT = "fail_local"
UNKNOWN_USER_TEXT = "fail_unknown_user: deliberate"
# Reply statuses above 7 (Ice 3.8 only): InvalidData, Unauthorized,
# NotSupported, and a custom one (any byte value is legal).
EXTRA_STATUSES = [8, 9, 10, 42]

MIB = 1 << 20
# Just under Ice's default Ice.MessageSizeMax (1 MiB) including the message,
# request and reply headers.
NEAR_MAX = MIB - 1024
ECHO_SIZES = [0, 1, 16, 255, 256, 4096, 65536, 512 * 1024, NEAR_MAX]


def pattern(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (catches offset bugs)."""
    block = bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (n // len(block) + 1))[:n]


def encaps(content: bytes) -> bytes:
    return struct.pack("<i", len(content) + 6) + ENCODING + content


def write_size(n: int) -> bytes:
    return bytes([n]) if n < 255 else b"\xff" + struct.pack("<i", n)


def write_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return write_size(len(raw)) + raw


def write_strings(strings: list[str]) -> bytes:
    return write_size(len(strings)) + b"".join(write_string(s) for s in strings)


def write_context(ctx: dict[str, str]) -> bytes:
    """A dictionary<string,string>, keys sorted (as echo_context answers)."""
    items = sorted(ctx.items())
    return write_size(len(items)) + b"".join(write_string(k) + write_string(v) for k, v in items)


def read_size(buf: bytes, pos: int) -> tuple[int, int]:
    if buf[pos] < 255:
        return buf[pos], pos + 1
    return struct.unpack_from("<i", buf, pos + 1)[0], pos + 5


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_size(buf, pos)
    return buf[pos : pos + n].decode("utf-8"), pos + n


def read_strings(buf: bytes) -> list[str]:
    """A sequence<string> (as close_reasons answers)."""
    n, pos = read_size(buf, 0)
    out = []
    for _ in range(n):
        s, pos = read_string(buf, pos)
        out.append(s)
    return out
