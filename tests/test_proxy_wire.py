"""Proxies as values on the wire (encoding 1.1), the codec's proxy hooks."""

from __future__ import annotations

import struct

import pytest

import aiocomm
from aiocomm import _proxy_wire


def _s(text: str) -> bytes:
    data = text.encode()
    return bytes((len(data),)) + data


def _tcp(host: str, port: int, timeout: int, compress: bool) -> tuple[int, bytes]:
    return 1, _s(host) + struct.pack("<ii", port, timeout) + bytes((compress,))


async def test_encode_lays_out_identity_facet_mode_versions_endpoints(
        comm: aiocomm.Communicator) -> None:
    proxy = comm.proxy("cat/name -f fac -o:tcp -h 10.0.0.1 -p 4061 -t 5000 -z:tcp -h h -p 1")
    first, second = _tcp("10.0.0.1", 4061, 5000, True)[1], _tcp("h", 1, -1, False)[1]
    expected = (_s("name") + _s("cat") + b"\x01" + _s("fac") + bytes((1, 0, 1, 0, 1, 1))
                + b"\x02"
                + struct.pack("<hiBB", 1, len(first) + 6, 1, 1) + first
                + struct.pack("<hiBB", 1, len(second) + 6, 1, 1) + second)
    assert _proxy_wire.encode(proxy) == expected


async def test_decode_binds_to_the_communicator_and_keeps_tcp_endpoints(
        comm: aiocomm.Communicator) -> None:
    proxy = _proxy_wire.decode(comm, "name", "cat", "fac", 1, False, (1, 1),
                               [_tcp("h", 7, 250, True), (2, b"ssl, dropped")], "")
    assert proxy.communicator is comm and proxy.is_oneway
    assert proxy.identity == aiocomm.Identity("name", "cat") and proxy.facet == "fac"
    assert proxy.endpoints == ("tcp -h h -p 7 -t 250 -z",)
    assert str(_proxy_wire.decode(comm, "x", "", "", 0, False, (1, 1),
                                  [_tcp("h", 1, -1, False)], "")) == "x -t -e 1.1:tcp -h h -p 1"


async def test_a_well_known_proxy_writes_an_empty_adapter_id(comm: aiocomm.Communicator) -> None:
    proxy = _proxy_wire.decode(comm, "x", "", "", 0, False, (1, 1), [], "")
    assert _proxy_wire.encode(proxy) == _s("x") + _s("") + b"\x00" + bytes((0, 0, 1, 0, 1, 1)) \
        + b"\x00" + _s("")


async def test_malformed_endpoints_are_marshal_errors(comm: aiocomm.Communicator) -> None:
    for body in (b"", _s("host") + b"\x01\x00", _tcp("h", 70000, 0, False)[1]):
        with pytest.raises(aiocomm.MarshalError):
            _proxy_wire.decode(comm, "x", "", "", 0, False, (1, 1), [(1, body)], "")
    with pytest.raises(aiocomm.MarshalError):
        _proxy_wire.decode(None, "x", "", "", 0, False, (1, 1), [], "")
    assert issubclass(aiocomm.MarshalError, aiocomm.ProtocolError)
    assert issubclass(aiocomm.MarshalError, ValueError)


async def test_a_host_the_endpoint_text_cannot_carry_is_a_marshal_error(
        comm: aiocomm.Communicator) -> None:
    # Found by fuzz_typed (cpp/fuzz/regressions/typed-*--empty_host): an empty
    # host decoded into a proxy that raised ProxyParseError when sent on.
    for host in ("", "a\tb", 'a"b', "\n"):
        with pytest.raises(aiocomm.MarshalError, match="cannot be used"):
            _proxy_wire.decode(comm, "x", "", "", 0, False, (1, 1), [_tcp(host, 1, -1, False)], "")
    # Hosts the text form quotes still decode, and are sent on unchanged.
    for host in ("::1", "a b"):
        proxy = _proxy_wire.decode(comm, "x", "", "", 0, False, (1, 1),
                                   [_tcp(host, 1, -1, False)], "")
        assert _tcp(host, 1, -1, False)[1] in _proxy_wire.encode(proxy)


def test_encode_takes_typed_proxies_and_refuses_other_values() -> None:
    with pytest.raises(TypeError):
        _proxy_wire.encode("x:tcp -h h -p 1")
