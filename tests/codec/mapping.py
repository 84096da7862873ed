"""A hand-written mapping of Codec.ice onto aiocomm's codec descriptors: what
the Slice front end generates, written out so the codec is tested alone."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from aiocomm._core import codec

UNSET = None


class Color(enum.IntEnum):
    red = 0
    green = 5
    blue = 6


@dataclass
class Point:
    x: int = 0
    y: int = 0


@dataclass
class Mixed:
    b: bool
    by: int
    s: int
    i: int
    l: int  # noqa: E741 (the Slice name)
    f: float
    d: float
    str: str
    c: Color
    p: Point


class Value:
    """Keyword-constructed, like the mapping's classes."""

    def __init__(self, **fields: Any) -> None:
        for k, v in fields.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={getattr(self, 'id', None)!r})"


class Base(Value):
    pass


class Node(Base):
    pass


class Leaf(Base):
    pass


class Secret(Leaf):
    pass


class Box(Value):
    pass


class Err(Exception):
    def __init__(self, **fields: Any) -> None:
        super().__init__()
        for k, v in fields.items():
            setattr(self, k, v)


class SubErr(Err):
    pass


class HiddenErr(SubErr):
    pass


b = codec.builtin
t_int, t_string, t_double = b("int"), b("string"), b("double")
t_color = codec.enum({int(c): c for c in Color})
t_point = codec.struct("::CodecTest::Point")
t_point.define(Point, [("x", t_int), ("y", t_int)])
t_mixed = codec.struct("::CodecTest::Mixed")
t_mixed.define(Mixed, [("b", b("bool")), ("by", b("byte")), ("s", b("short")), ("i", t_int),
                       ("l", b("long")), ("f", b("float")), ("d", t_double), ("str", t_string),
                       ("c", t_color), ("p", t_point)])
seq = codec.sequence
t_bytes, t_ints, t_strings = seq(b("byte")), seq(t_int), seq(t_string)
t_str_int = codec.dictionary(t_string, t_int)

c_base = codec.value_class("::CodecTest::Base", -1)
c_node = codec.value_class("::CodecTest::Node", -1)
c_leaf = codec.value_class("::CodecTest::Leaf", 7)
c_box = codec.value_class("::CodecTest::Box", -1)
c_base.define(Base, None, [("id", t_int, -1), ("name", t_string, -1)])
c_node.define(Node, c_base, [("next", codec.class_ref(c_node), -1), ("note", t_string, 2)])
c_leaf.define(Leaf, c_base, [("w", t_double, -1)])
c_box.define(Box, None, [("a", codec.class_ref(c_base), -1), ("b", codec.class_ref(c_base), -1),
                         ("pts", seq(t_point), -1)])
t_base = codec.class_ref(c_base)

e_err = codec.exception("::CodecTest::Err")
e_sub = codec.exception("::CodecTest::SubErr")
e_err.define(Err, None, [("code", t_int, -1)])
e_sub.define(SubErr, e_err, [("why", t_string, -1), ("extra", t_int, 1)])


def _op(name: str, ins: list[Any], outs: list[Any], ret: Any, fmt: str | None = None) -> Any:
    return codec.operation(name, ins, outs, ret, [e_err], fmt)


def _echo(name: str, t: Any, fmt: str | None = None) -> Any:
    return _op(name, [(t, -1)], [], (t, -1), fmt)


OPERATIONS: dict[str, Any] = {
    "echoMixed": _echo("echoMixed", t_mixed),
    "echoMixeds": _echo("echoMixeds", seq(t_mixed)),
    "echoBytes": _echo("echoBytes", t_bytes),
    "echoBools": _echo("echoBools", seq(b("bool"))),
    "echoShorts": _echo("echoShorts", seq(b("short"))),
    "echoInts": _echo("echoInts", t_ints),
    "echoLongs": _echo("echoLongs", seq(b("long"))),
    "echoFloats": _echo("echoFloats", seq(b("float"))),
    "echoDoubles": _echo("echoDoubles", seq(t_double)),
    "echoStrings": _echo("echoStrings", t_strings),
    "echoPoints": _echo("echoPoints", seq(t_point)),
    "echoIntsSeq": _echo("echoIntsSeq", seq(t_ints)),
    "echoStrInt": _echo("echoStrInt", t_str_int),
    "echoIntPoint": _echo("echoIntPoint", codec.dictionary(t_int, t_point)),
    "echoColor": _echo("echoColor", t_color),
    "echoProxy": _echo("echoProxy", codec.proxy(None)),
    "outs": _op("outs", [(t_int, -1), (t_string, -1)], [(t_string, -1), (t_int, -1)], (t_int, -1)),
    "nothing": _op("nothing", [], [], None),
    "opts": _op("opts",
                [(t_int, -1), (t_string, 1), (t_point, 5), (t_ints, 2), (t_color, 4),
                 (t_mixed, 40), (t_bytes, 6), (t_str_int, 7), (t_strings, 8)],
                [(t_string, 9), (t_int, -1)], (t_int, 3)),
    "opts2": _op("opts2",
                 [(t_base, 1), (codec.proxy(None), 2), (codec.dictionary(t_int, t_int), 3),
                  (seq(t_point), 4), (b("bool"), 5), (b("short"), 6), (b("long"), 7),
                  (t_double, 8), (b("float"), 9), (b("byte"), 35)],
                 [], (t_base, 11)),
    "optsSliced": _op("optsSliced", [(t_base, 1), (codec.class_ref(c_node), 2)], [], None,
                      "sliced"),
    "echoBase": _echo("echoBase", t_base),
    "echoBaseSliced": _echo("echoBaseSliced", t_base, "sliced"),
    "echoBox": _echo("echoBox", codec.class_ref(c_box)),
    "echoBoxSliced": _echo("echoBoxSliced", codec.class_ref(c_box), "sliced"),
    "echoValueSliced": _echo("echoValueSliced", codec.class_ref(None), "sliced"),
    "throwErr": _op("throwErr", [(t_int, -1)], [], None),
    "throwSliced": _op("throwSliced", [(t_int, -1)], [], None, "sliced"),
}
