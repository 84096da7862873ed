"""The encoding 1.1 codec (aiocomm._core.codec) against ZeroC Ice 3.7 as the oracle.

Ice's own generated code (slice2py) encodes every case of tests/codec/cases.py
in a subprocess of the system interpreter; the codec must produce the same
bytes and decode Ice's bytes back to equal values. Then round trips, type and
range errors, and hostile input: truncation at every cut, lying sizes, class
indices pointing forward, tags out of order, graphs too deep, bad UTF-8,
unknown enumerators.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aiocomm
from aiocomm._core import codec
from aiocomm.slice import UnknownSlicedValue

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "codec"))

import mapping as m  # noqa: E402
from cases import cases  # noqa: E402

ICE_PYTHON = os.environ.get("AIOCOMM_ICE_PYTHON", "/usr/bin/python3")
SLICE2PY = os.environ.get("AIOCOMM_SLICE2PY", "/usr/bin/slice2py")


class LocalMarshalError(ValueError):
    """Stands in for aiocomm.MarshalError until the package defines it."""


MarshalError: type[Exception] = getattr(aiocomm, "MarshalError", LocalMarshalError)


class FakeProxy:
    """What the proxy hooks see: the decoded fields, encoded back the same way."""

    def __init__(self, *fields: Any) -> None:
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeProxy) and other.fields[1:] == self.fields[1:]

    def __hash__(self) -> int:
        return hash(self.fields[1:4])


def _string(s: str) -> bytes:
    b = s.encode()
    return _size(len(b)) + b


def _size(n: int) -> bytes:
    return bytes([n]) if n < 255 else b"\xff" + struct.pack("<i", n)


def fake_encode(proxy: Any) -> bytes:
    _, name, category, facet, mode, secure, enc, endpoints, adapter_id = proxy.fields
    out = _string(name) + _string(category)
    out += (_size(1) + _string(facet)) if facet else _size(0)
    out += bytes([mode, int(secure), 1, 0, enc[0], enc[1]]) + _size(len(endpoints))
    for kind, body in endpoints:
        out += struct.pack("<hi", kind, len(body) + 6) + b"\x01\x01" + body
    if not endpoints:
        out += _string(adapter_id)
    return out


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    codec.configure(marshal_error=MarshalError, proxy_encode=fake_encode, proxy_decode=FakeProxy,
                    unknown_value=UnknownSlicedValue)
    yield
    # The hooks are process-wide: give the tests that follow aiocomm's own.
    from aiocomm.slice.runtime import configure_codec

    configure_codec()


class Namespace:
    UNSET = None
    proxy = None  # set per case below

    def __getattr__(self, name: str) -> Any:
        return getattr(m, name)


def _proxies(text: str) -> Any:
    # The aiocomm side of a proxy case: what decoding Ice's bytes yields.
    return ("proxy", text)


NS = Namespace()
NS.proxy = _proxies  # type: ignore[assignment]
CASES = cases(NS)


@functools.cache
def oracle_output(tmp: str) -> dict[str, Any]:
    gen = Path(tmp)
    subprocess.run([SLICE2PY, "--output-dir", str(gen), str(HERE / "codec" / "Codec.ice")],
                   check=True, capture_output=True, timeout=60)
    result = subprocess.run([ICE_PYTHON, str(HERE / "codec" / "ice_oracle.py"), str(gen)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    probe = subprocess.run([ICE_PYTHON, "-c", "import Ice"], capture_output=True, check=False)
    if probe.returncode != 0 or not Path(SLICE2PY).exists():
        reason = f"ZeroC Ice 3.7 (python3-zeroc-ice, slice2py) not usable by {ICE_PYTHON}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return oracle_output(str(tmp_path_factory.mktemp("oracle")))


def same(a: Any, b: Any, seen: dict[tuple[int, int], bool] | None = None) -> bool:
    """Deep equality that follows class graphs (cycles, sharing) and compares proxies by fields."""
    seen = {} if seen is None else seen
    if isinstance(a, FakeProxy) or isinstance(b, FakeProxy):
        return a == b
    if isinstance(a, m.Value | BaseException):
        if type(a) is not type(b):
            return False
        key = (id(a), id(b))
        if key in seen:
            return True
        seen[key] = True
        return vars(a).keys() == vars(b).keys() and all(
            same(v, getattr(b, k), seen) for k, v in vars(a).items())
    if isinstance(a, list | tuple):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y, seen) for x, y in zip(a, b, strict=True)))
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(same(v, b[k], seen) for k, v in a.items()))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or struct.pack("<f", a) == struct.pack("<f", b)
    return bool(a == b) and type(a) is type(b)


def _has_proxy(values: tuple[Any, ...]) -> bool:
    # Proxy cases are described by their text on the Ice side; on ours, what
    # decoding Ice's bytes gives is checked field by field in test_proxy_fields.
    return any(isinstance(v, tuple) and v[:1] == ("proxy",) for v in values)


@pytest.mark.parametrize("name", sorted(CASES))
def test_in_params_match_ice(oracle: dict[str, Any], name: str) -> None:
    op_name, args, _ = CASES[name]
    op = m.OPERATIONS[op_name]
    wire = bytes.fromhex(oracle[name]["in"])
    decoded = op.decode_in(wire, None)
    if _has_proxy(args):
        # Re-encoding what was decoded gives Ice's bytes back.
        assert op.encode_in(decoded) == wire
        return
    assert op.encode_in(args) == wire
    assert same(decoded, tuple(_float32(args, op_name)))


def _float32(values: Any, op_name: str) -> Any:
    # float (32-bit) loses precision on the wire: compare against what survives it.
    if op_name == "echoFloats" or op_name == "echoMixed" or op_name == "echoMixeds":
        return _round_trip(values)
    return values


def _round_trip(v: Any) -> Any:
    if isinstance(v, float):
        return struct.unpack("<f", struct.pack("<f", v))[0]
    if isinstance(v, list):
        return [_round_trip(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_round_trip(x) for x in v)
    if isinstance(v, m.Mixed):
        return m.Mixed(v.b, v.by, v.s, v.i, v.l, _round_trip(v.f), v.d, v.str, v.c, v.p)
    return v


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_match_ice(oracle: dict[str, Any], name: str) -> None:
    op_name, _, result = CASES[name]
    op = m.OPERATIONS[op_name]
    wire = bytes.fromhex(oracle[name]["out"])
    if not oracle[name]["ok"]:
        assert op.encode_exception(result) == wire
        exc = op.decode_exception(wire, None)
        assert same(exc, result)
        return
    decoded = op.decode_out(wire, None)
    if _has_proxy((result,)):
        assert op.encode_out(decoded) == wire
        return
    assert op.encode_out(result) == wire
    assert same(decoded, _float32(result, op_name))


def test_proxy_fields(oracle: dict[str, Any]) -> None:
    op = m.OPERATIONS["echoProxy"]
    (p,) = op.decode_in(bytes.fromhex(oracle["proxy"]["in"]), "COMM")
    assert p.fields[0] == "COMM"
    assert p.fields[1:5] == ("ident", "cat", "fac", 0)
    assert p.fields[5] is True
    assert p.fields[6] == (1, 1)
    ((kind, body),) = p.fields[7]
    assert kind == 1 and b"127.0.0.1" in body
    assert op.decode_in(bytes.fromhex(oracle["proxy_null"]["in"]), None) == (None,)
    q = op.decode_out(bytes.fromhex(oracle["proxy"]["out"]), None)
    assert q.fields[1] == "x" and q.fields[7] == [] and q.fields[8] == "adapter"
    r = op.decode_out(bytes.fromhex(oracle["proxy_null"]["out"]), None)
    assert r.fields[4] == 3 and r.fields[7][0][0] == 3  # datagram mode, udp endpoint


def test_proxy_wrap() -> None:
    wrapped = codec.proxy(lambda p: ("wrapped", p))
    data = fake_encode(FakeProxy(None, "n", "", "", 0, False, (1, 1), [], "a"))
    assert wrapped.decode(data)[0] == "wrapped"
    assert wrapped.encode(None) == b"\x00\x00"
    assert wrapped.decode(b"\x00\x00") is None


def test_unknown_class_is_sliced_to_known_base(oracle: dict[str, Any]) -> None:
    op = m.OPERATIONS["echoBaseSliced"]
    leaf = op.decode_out(bytes.fromhex(oracle["secret_sliced"]["out"]), None)
    assert type(leaf) is m.Leaf
    assert (leaf.id, leaf.name, leaf.w) == (8, "secret", 1.25)
    box = m.OPERATIONS["echoBoxSliced"].decode_out(
        bytes.fromhex(oracle["box_secret_sliced"]["out"]), None)
    assert box.a is box.b and type(box.a) is m.Leaf


def test_unknown_exception_is_sliced_to_known_base(oracle: dict[str, Any]) -> None:
    op = m.OPERATIONS["throwSliced"]
    exc = op.decode_exception(bytes.fromhex(oracle["hidden_err_sliced"]["out"]), None)
    assert type(exc) is m.SubErr
    assert (exc.code, exc.why, exc.extra) == (1, "w", 2)


def test_class_with_no_known_slice_is_unknown_sliced_value(oracle: dict[str, Any]) -> None:
    # Nothing of ::CodecTest::Stranger is known here: sliced down to Value, as Ice does.
    op = m.OPERATIONS["echoValueSliced"]
    value = op.decode_out(bytes.fromhex(oracle["stranger_sliced"]["out"]), None)
    assert type(value) is UnknownSlicedValue
    assert value.unknown_type_id == "::CodecTest::Stranger"
    # Where a known class is expected, it is still a MarshalError.
    with pytest.raises(MarshalError, match="expected an instance"):
        m.OPERATIONS["echoBaseSliced"].decode_out(
            bytes.fromhex(oracle["stranger_sliced"]["out"]), None)
    # Its type id came off the wire: bad UTF-8 there is bad data (found by fuzz_typed).
    wire = bytearray(bytes.fromhex(oracle["stranger_sliced"]["out"]))
    wire[wire.index(b"::CodecTest::Stranger")] = 0xBA
    with pytest.raises(MarshalError, match="UTF-8"):
        op.decode_out(bytes(wire), None)
    # Its data was not kept: it cannot be sent on.
    with pytest.raises(TypeError):
        op.encode_out(value)


def test_unknown_class_in_compact_format_is_marshal_error(oracle: dict[str, Any]) -> None:
    # Compact slices have no size: an unknown most-derived type cannot be skipped.
    wire = bytearray(bytes.fromhex(oracle["node_cycle"]["out"]))
    wire[wire.index(b"Node")] = ord("X")
    with pytest.raises(MarshalError, match="unknown"):
        m.OPERATIONS["echoBase"].decode_out(bytes(wire), None)


def test_graph_is_kept() -> None:
    a = m.Node(id=1, name="a", next=None, note=None)
    a.next = a
    for fmt in (None, "sliced"):
        op = codec.operation("x", [(m.t_base, -1), (m.t_base, -1)], [], None, [], fmt)
        x, y = op.decode_in(op.encode_in((a, a)), None)
        assert x is y and x.next is x and x.note is None


# ------------------------------------------------------------ round trips

def test_builtin_round_trips() -> None:
    for name, values in {
        "bool": [True, False], "byte": [0, 255], "short": [-32768, 32767],
        "int": [-(2**31), 2**31 - 1], "long": [-(2**63), 2**63 - 1],
        "float": [0.5, -(2.0**100)], "double": [1e-300, float("inf")], "string": ["", "ü" * 300],
    }.items():
        t = codec.builtin(name)
        for v in values:
            assert t.decode(t.encode(v)) == v


def test_byte_sequence_accepts_any_bytes_like() -> None:
    t = m.t_bytes
    for v in (b"abc", bytearray(b"abc"), memoryview(b"abc"), [97, 98, 99]):
        assert t.encode(v) == b"\x03abc"
    assert type(t.decode(b"\x03abc")) is bytes


def test_numeric_sequences_accept_buffers_and_sequences() -> None:
    import array

    ints = m.t_ints
    want = ints.encode([1, 2, 3])
    assert ints.encode(array.array("i", [1, 2, 3])) == want
    assert ints.encode((1, 2, 3)) == want
    assert ints.encode(range(1, 4)) == want
    doubles = codec.sequence(codec.builtin("double"))
    assert doubles.decode(doubles.encode(array.array("d", [0.5, 2.0]))) == [0.5, 2.0]


# ------------------------------------------------------------ encoding errors

def test_wrong_types_are_type_errors_naming_the_field() -> None:
    with pytest.raises(TypeError, match="expected an int"):
        codec.builtin("int").encode("1")
    with pytest.raises(TypeError, match=r"Point\.y"):
        m.t_point.encode(m.Point(1, "2"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Point"):
        m.t_point.encode((1, 2))
    with pytest.raises(TypeError):
        m.t_strings.encode("abc")
    with pytest.raises(TypeError, match="argument 1"):
        m.OPERATIONS["outs"].encode_in((1, 2))
    with pytest.raises(TypeError, match="takes 2 arguments"):
        m.OPERATIONS["outs"].encode_in((1,))


def test_out_of_range_is_value_error() -> None:
    for name, bad in (("byte", 256), ("byte", -1), ("short", 2**15), ("int", 2**31),
                      ("long", 2**63), ("float", 1e39)):
        with pytest.raises(ValueError, match="out of range"):
            codec.builtin(name).encode(bad)
    with pytest.raises(ValueError):
        m.t_ints.encode([1, 2**40])
    with pytest.raises(ValueError):
        m.t_color.encode(3)


# ------------------------------------------------------------ hostile input

def _all_cuts(t: Any, data: bytes, optionals: bool = False) -> None:
    full = t(data)
    for cut in range(len(data)):
        if not optionals:
            with pytest.raises(MarshalError):
                t(data[:cut])
            continue
        # Cut between two optional params, the rest simply reads as unset.
        try:
            part = t(data[:cut])
        except MarshalError:
            continue
        assert not same(part, full)


def test_truncation_at_every_cut(oracle: dict[str, Any]) -> None:
    for name in ("mixed", "opts_all", "node_cycle", "node_cycle_sliced", "box_sliced",
                 "err_sub_sliced", "strings", "int_point", "proxy"):
        op_name = CASES[name][0]
        op = m.OPERATIONS[op_name]
        data = bytes.fromhex(oracle[name]["in"])
        if data:
            _all_cuts(lambda d, op=op: op.decode_in(d, None), data, optionals=name == "opts_all")
        out = bytes.fromhex(oracle[name]["out"])
        if oracle[name]["ok"]:
            _all_cuts(lambda d, op=op: op.decode_out(d, None), out, optionals=name == "opts_all")
        else:
            _all_cuts(lambda d, op=op: op.decode_exception(d, None), out)


@pytest.mark.parametrize("t", [m.t_ints, m.t_strings, m.t_bytes, codec.sequence(m.t_point),
                               m.t_str_int, codec.sequence(m.t_base)])
def test_declared_sizes_of_billions_fail_fast(t: Any) -> None:
    start = time.perf_counter()
    for size in (2**31 - 1, 2**30, 300):
        with pytest.raises(MarshalError, match="declared count"):
            t.decode(b"\xff" + struct.pack("<i", size) + b"\x00" * 16)
    assert time.perf_counter() - start < 0.05
    with pytest.raises(MarshalError, match="negative"):
        t.decode(b"\xff\xff\xff\xff\xff")


def test_class_index_pointing_forward() -> None:
    with pytest.raises(MarshalError, match="not yet read"):
        m.t_base.decode(b"\x05")


def test_optional_tags_out_of_order() -> None:
    op = m.OPERATIONS["opts"]
    good = op.encode_in((1, "s", None, [4], None, None, None, None, None))
    # req int, then tag 1 (VSize string), then tag 2 (VSize int seq): swap them.
    tag1 = bytes([1 << 3 | 5]) + b"\x01s"
    tag2 = good[4 + len(tag1):]
    assert good == struct.pack("<i", 1) + tag1 + tag2
    with pytest.raises(MarshalError, match="out of order"):
        op.decode_in(struct.pack("<i", 1) + tag2 + tag1, None)
    with pytest.raises(MarshalError, match="out of order"):
        op.decode_in(struct.pack("<i", 1) + tag1 + tag1, None)


def test_unknown_tags_are_skipped() -> None:
    t_int = codec.builtin("int")
    op = codec.operation("x", [(t_int, -1), (t_int, 9)], [], None, [], None)
    unknown = bytes([3 << 3 | 6]) + struct.pack("<i", 2) + b"zz" + bytes([4 << 3 | 0]) + b"\x07"
    data = struct.pack("<i", 1) + unknown + bytes([9 << 3 | 2]) + struct.pack("<i", 5)
    assert op.decode_in(data, None) == (1, 5)
    with pytest.raises(MarshalError, match="format"):
        op.decode_in(struct.pack("<i", 1) + bytes([9 << 3 | 0]) + b"\x05", None)


def _node_chain(n: int) -> bytes:
    # Compact format, as Ice writes a chain: each Node slice holds its `next`
    # inline before its own id and name; the Base slice closes the instance.
    head = b"\x01\x01" + _string("::CodecTest::Node")
    rest = b"\x01\x02\x01"  # later instances: type id by index 1
    tail = b"\x00"  # the last next: null
    base = b"\x20" + struct.pack("<i", 0) + _string("")
    out = head
    for _ in range(n - 1):
        out += rest
    out += tail
    out += base * n  # each Node's Base slice, innermost first
    return out


def test_class_graph_depth_limit() -> None:
    def chain(n: int) -> m.Node:
        head = m.Node(id=0, name="", next=None, note=None)
        for i in range(1, n):
            head = m.Node(id=i, name="", next=head, note=None)
        return head

    ok = m.t_base.encode(chain(100))
    assert m.t_base.decode(ok).id == 99
    # One more level, by hand: the encoder itself refuses it.
    with pytest.raises(ValueError, match="deeper than 100"):
        m.t_base.encode(chain(101))
    with pytest.raises(ValueError, match="deeper than 100"):
        m.t_base.encode(chain(100_000))
    deep = _node_chain(101)
    with pytest.raises(MarshalError, match="deeper than 100"):
        m.t_base.decode(deep)
    assert m.t_base.decode(_node_chain(100)).id == 0


def test_bad_utf8_and_unknown_enumerator() -> None:
    with pytest.raises(MarshalError, match="UTF-8"):
        codec.builtin("string").decode(b"\x02\xff\xfe")
    with pytest.raises(MarshalError, match="enumerator"):
        m.t_color.decode(b"\x03")
    with pytest.raises(MarshalError, match="left"):
        codec.builtin("int").decode(b"\x01\x00\x00\x00\x00")


def test_trailing_and_garbage_never_crash() -> None:
    import random

    rng = random.Random(12)
    ops = list(m.OPERATIONS.values())
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        op = rng.choice(ops)
        for call in (op.decode_in, op.decode_out, op.decode_exception):
            try:
                call(data, None)
            except (MarshalError, TypeError):
                pass
