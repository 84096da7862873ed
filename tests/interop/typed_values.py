"""What the typed interop peers and tests agree on, written once.

``typed_peer.py`` (under either Ice version's interpreter) and
``test_typed_interop.py`` (under aiocomm's) both import this module, so it
imports neither Ice nor aiocomm: the sample values and the servants'
transformations of everything that is not a generated type. The
transformations of structs, enums and classes build each side's own
generated types, so they stay on each side.
"""

from __future__ import annotations

from typing import Any

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
TEXTS = ["", "plain", "h\u00e9llo w\u00f6rld \u2713 \U0001d11e", "x" * 300]
IDEMPOTENT = 2  # Ice::OperationMode::Idempotent

# Color: red = 1, green = 5, blue = 6; next() cycles red -> green -> blue -> red.
NEXT_COLOR = {1: 5, 5: 6, 6: 1}
# Bag's optional members and opOptional's optional params, in Slice order.
BAG_NAMES = ["b", "by", "s", "i", "l", "f", "d", "text", "c", "p", "seg", "ints", "strs", "map",
             "blob"]


# --- the servants' transformations of built-in types ---------------------------


def t_bool(v: bool) -> bool:
    return not v


def t_byte(v: int) -> int:
    return v ^ 0x5A


def t_short(v: int) -> int:
    return v ^ 0x5A5A


def t_int(v: int) -> int:
    return v ^ 0x5A5A5A5A


def t_long(v: int) -> int:
    return v ^ 0x5A5A5A5A5A5A5A5A


def t_float(v: float) -> float:
    return -2.0 * v


def t_str(v: str) -> str:
    return "<" + v + ">"


def t_ints(v: Any) -> list[int]:
    return [t_int(x) for x in reversed(list(v))]


def t_strs(v: Any) -> list[str]:
    return [t_str(x) for x in reversed(list(v))]


def t_map(v: Any) -> dict[str, int]:
    return {t_str(k): t_int(x) for k, x in v.items()}


def t_blob(v: Any) -> bytes:
    return bytes(reversed(bytes(v)))


def sample_seqs(n: int) -> dict[str, Any]:
    """Interop::Seqs members of ``n`` elements, but points and colors (generated types)."""
    return dict(
        bytes=bytes(range(256)) * (n // 100 + 1) if n else b"",
        bools=[i % 3 == 0 for i in range(n)],
        shorts=[(i * 77) % 65536 - 32768 for i in range(n)],
        ints=[i * 1000003 - 5 for i in range(n)],
        longs=[(i << 40) - 7 for i in range(n)],
        floats=[i * 0.5 for i in range(n)],
        doubles=[i * -0.125 for i in range(n)],
        strings=[TEXTS[i % len(TEXTS)] for i in range(n)],
        nested=[[n, -n], [], [I32_MAX]][: min(n, 3)],
    )
