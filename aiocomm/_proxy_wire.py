"""Proxies as values on the wire (encoding 1.1): the codec's proxy hooks.

The codec writes the null proxy itself and calls :func:`encode` for every
other proxy, :func:`decode` for every non-null proxy it reads. Only tcp
endpoints (type 1) are understood; a proxy's other endpoints are dropped on
decoding, as a client without that transport could not use them anyway.
"""

from __future__ import annotations

import struct
from typing import Any

from ._channel import channel_of
from ._proxy_string import Endpoint, parse_endpoint
from .errors import MarshalError, ProxyParseError
from .identity import Identity
from .proxy import Proxy

__all__ = ["decode", "encode"]

TCP = 1
# Proxy modes on the wire (Ice's Reference::Mode): twoway, oneway, batch oneway,
# datagram, batch datagram. aiocomm sends batch modes as plain oneway.
_ONEWAY_MODES = frozenset({1, 2, 3, 4})
_INT = struct.Struct("<i")
_ENDPOINT_HEADER = struct.Struct("<hiBB")  # type, encapsulation size, encoding major, minor


def _size(n: int) -> bytes:
    return bytes((n,)) if n < 255 else b"\xff" + _INT.pack(n)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _size(len(data)) + data


def _tcp_body(endpoint: Endpoint) -> bytes:
    host = "127.0.0.1" if endpoint.host == "*" else endpoint.host
    timeout = -1 if endpoint.timeout_ms is None else endpoint.timeout_ms
    return _string(host) + _INT.pack(endpoint.port) + _INT.pack(timeout) + (
        b"\x01" if endpoint.compress else b"\x00")


def encode(value: object) -> bytes:
    """The complete wire form of a proxy, or of a typed proxy (which has ``.proxy``)."""
    proxy = value if isinstance(value, Proxy) else getattr(value, "proxy", None)
    if not isinstance(proxy, Proxy):
        raise TypeError(f"expected a proxy, not {type(value).__name__}")
    identity = proxy.identity
    parts = [_string(identity.name), _string(identity.category)]
    parts.append(_size(1) + _string(proxy.facet) if proxy.facet else _size(0))
    # mode, secure, protocol 1.0, encoding 1.1
    parts.append(bytes((1 if proxy.is_oneway else 0, 0, 1, 0, 1, 1)))
    endpoints = [parse_endpoint(text) for text in proxy.endpoints]
    parts.append(_size(len(endpoints)))
    for endpoint in endpoints:
        body = _tcp_body(endpoint)
        parts.append(_ENDPOINT_HEADER.pack(TCP, len(body) + 6, 1, 1) + body)
    if not endpoints:
        parts.append(_string(proxy.adapter_id or ""))  # "": a well-known proxy
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MarshalError("truncated tcp endpoint")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def size(self) -> int:
        first = self.take(1)[0]
        return first if first < 255 else int(_INT.unpack(self.take(4))[0])

    def string(self) -> str:
        try:
            return self.take(self.size()).decode("utf-8")
        except UnicodeDecodeError:
            raise MarshalError("tcp endpoint host is not UTF-8") from None

    def int(self) -> int:
        return int(_INT.unpack(self.take(4))[0])


def _tcp_endpoint(body: bytes) -> Endpoint:
    reader = _Reader(bytes(body))
    host = reader.string()
    port = reader.int()
    timeout = reader.int()
    compress = reader.take(1) != b"\x00"
    if not 0 <= port <= 65535:
        raise MarshalError(f"tcp endpoint port {port} is out of range")
    endpoint = Endpoint(host, port, None if timeout < 0 else timeout, compress)
    # A proxy keeps its endpoints as text: a host that text cannot carry (empty,
    # a quote, a tab...) would make a proxy that fails when used or sent on.
    try:
        usable = parse_endpoint(str(endpoint)) == endpoint
    except ProxyParseError:
        usable = False
    if not usable:
        raise MarshalError(f"tcp endpoint host {host!r} cannot be used")
    return endpoint


def decode(receiver: object, name: str, category: str, facet: str, mode: int,
           secure: bool, encoding: tuple[int, int], endpoints: list[tuple[int, bytes]],
           adapter_id: str, *_: Any) -> Proxy:
    """A proxy bound to the receiver (a communicator, or its channel), from its
    decoded parts."""
    channel = channel_of(receiver)
    if channel is None:
        raise MarshalError("a proxy can only be decoded for a communicator")
    tcp = tuple(_tcp_endpoint(body) for kind, body in endpoints if kind == TCP)
    # No endpoints: indirect (an adapter id) or well-known (none), resolved
    # through the receiving communicator's locator.
    return Proxy(channel, Identity(name, category), facet, tcp,
                 oneway=mode in _ONEWAY_MODES, adapter_id=adapter_id,
                 locator=None if tcp else channel.default_locator)
