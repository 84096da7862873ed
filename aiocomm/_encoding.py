"""The few Slice encodings the runtime itself needs (the built-in operations)."""

from __future__ import annotations

import struct

from .errors import ProtocolError

__all__ = [
    "decode_bool",
    "decode_string",
    "decode_string_seq",
    "encode_bool",
    "encode_size",
    "encode_string",
    "encode_string_seq",
]


def encode_size(n: int) -> bytes:
    return bytes((n,)) if n < 255 else b"\xff" + struct.pack("<i", n)


def _read_size(data: bytes, at: int) -> tuple[int, int]:
    if at >= len(data):
        raise ProtocolError("truncated size")
    first = data[at]
    if first < 255:
        return first, at + 1
    if at + 5 > len(data):
        raise ProtocolError("truncated size")
    (n,) = struct.unpack_from("<i", data, at + 1)
    if n < 0:
        raise ProtocolError("negative size")
    return n, at + 5


def encode_string(text: str) -> bytes:
    raw = text.encode()
    return encode_size(len(raw)) + raw


def _read_string(data: bytes, at: int) -> tuple[str, int]:
    n, at = _read_size(data, at)
    if at + n > len(data):
        raise ProtocolError("truncated string")
    return data[at : at + n].decode(), at + n


def decode_string(data: bytes) -> str:
    text, _ = _read_string(bytes(data), 0)
    return text


def encode_string_seq(items: list[str]) -> bytes:
    return encode_size(len(items)) + b"".join(encode_string(s) for s in items)


def decode_string_seq(data: bytes) -> list[str]:
    data = bytes(data)
    n, at = _read_size(data, 0)
    out = []
    for _ in range(n):
        text, at = _read_string(data, at)
        out.append(text)
    return out


def encode_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def decode_bool(data: bytes) -> bool:
    if len(data) < 1:
        raise ProtocolError("truncated bool")
    return data[0] != 0
