"""The values both sides encode: the Ice oracle (``ice_oracle.py``, run by the
system interpreter with Ice's generated classes) and ``tests/test_codec.py``
(aiocomm's codec), each passing its own constructors in ``ns``.

A case is ``(operation, args, result)``; the oracle's servant returns
``result`` (or raises it) whatever the arguments.
"""

from __future__ import annotations

from typing import Any


def cases(ns: Any) -> dict[str, tuple[str, tuple[Any, ...], Any]]:
    point = ns.Point
    color = ns.Color
    unset = ns.UNSET

    def mixed(k: int) -> Any:
        return ns.Mixed(k % 2 == 0, k % 256, -k, k * 1000, -(2**40) - k, 1.5 * k, 2.25 / (k + 1),
                        "héllo " * (k % 3), color.blue if k % 2 else color.green, point(k, -k))

    def node_cycle() -> Any:
        a = ns.Node(id=1, name="a", next=None, note="first")
        b = ns.Node(id=2, name="b", next=a, note=unset)
        a.next = b
        return a

    def box_shared(secret: bool = False) -> Any:
        shared = ns.Leaf(id=7, name="leaf", w=0.5)
        other: Any = shared
        if secret:
            other = ns.Secret(id=8, name="secret", w=1.25, hidden="x", other=shared)
        return ns.Box(a=shared, b=other, pts=[point(1, 2)])

    return {
        "mixed": ("echoMixed", (mixed(3),), mixed(4)),
        "mixeds": ("echoMixeds", ([mixed(k) for k in range(5)],), []),
        "bytes": ("echoBytes", (bytes(range(256)) * 2,), b""),
        "bools": ("echoBools", ([True, False, True],), [False]),
        "shorts": ("echoShorts", ([-32768, 0, 32767],), [1]),
        "ints": ("echoInts", ([-(2**31), 0, 2**31 - 1] * 100,), [5, 6]),
        "longs": ("echoLongs", ([-(2**63), 2**63 - 1],), []),
        "floats": ("echoFloats", ([1.5, -0.25, 1e30],), [3.0]),
        "doubles": ("echoDoubles", ([1e300, -2.5],), [0.1]),
        "strings": ("echoStrings", (["", "a", "ü" * 300],), ["x"]),
        "points": ("echoPoints", ([point(1, 2), point(3, 4)],), []),
        "ints_seq": ("echoIntsSeq", ([[1], [], [2, 3]],), [[]]),
        "str_int": ("echoStrInt", ({"a": 1, "bb": -2},), {}),
        "int_point": ("echoIntPoint", ({1: point(5, 6)},), {2: point(0, 0)}),
        "color": ("echoColor", (color.green,), color.red),
        "proxy": ("echoProxy", (ns.proxy("cat/ident -f fac -s:tcp -h 127.0.0.1 -p 4061 -t 500"),),
                  ns.proxy("x @ adapter")),
        "proxy_null": ("echoProxy", (None,), ns.proxy("y -d:udp -h \"::1\" -p 5 -c")),
        "outs": ("outs", (4, "four"), (8, "four", 5)),
        "nothing": ("nothing", (), None),
        "opts_none": ("opts", (1, unset, unset, unset, unset, unset, unset, unset, unset),
                      (unset, unset, 2)),
        "opts_all": ("opts", (1, "s", point(2, 3), [4, 5], color.blue, mixed(1), b"\x00\x01",
                              {"k": 9}, ["p", "q"]), (7, "os", 3)),
        "opts_big": ("opts", (1, "s" * 300, unset, list(range(100)), unset, unset, b"z" * 300,
                              {str(k): k for k in range(60)}, ["y"] * 300), (unset, "o" * 400, 0)),
        "opts2_none": ("opts2", (unset,) * 10, unset),
        "opts2_all": ("opts2", (ns.Leaf(id=1, name="n", w=1.0), unset, {1: 2, 3: 4},
                                [point(1, 1)] * 3, True, -5, 2**40, 0.5, 0.25, 200),
                      node_cycle()),
        "opts2_proxy": ("opts2", (unset, ns.proxy("p:tcp -h h -p 1"), {}, [], False, 0, 0, 0.0,
                                  0.0, 0), unset),
        "opts_sliced": ("optsSliced", (node_cycle(), node_cycle()), None),
        "base_null": ("echoBase", (None,), None),
        "base_leaf": ("echoBase", (ns.Leaf(id=3, name="l", w=2.0),), ns.Base(id=1, name="b")),
        "node_cycle": ("echoBase", (node_cycle(),), node_cycle()),
        "node_cycle_sliced": ("echoBaseSliced", (node_cycle(),), node_cycle()),
        "box": ("echoBox", (box_shared(),), box_shared()),
        "box_sliced": ("echoBoxSliced", (box_shared(),), box_shared()),
        "err": ("throwErr", (1,), ns.Err(code=5)),
        "err_sub": ("throwErr", (1,), ns.SubErr(code=6, why="because", extra=unset)),
        "err_sub_sliced": ("throwSliced", (1,), ns.SubErr(code=6, why="because", extra=9)),
    }


# Cases whose bytes only the oracle can produce: types aiocomm does not know.
def oracle_only(ns: Any) -> dict[str, tuple[str, tuple[Any, ...], Any]]:
    secret = ns.Secret(id=8, name="secret", w=1.25, hidden="x", other=None)
    secret.other = secret
    return {
        "secret_sliced": ("echoBaseSliced", (None,), secret),
        "box_secret_sliced": ("echoBoxSliced", (None,),
                                 ns.Box(a=secret, b=secret, pts=[])),
        "stranger_sliced": ("echoValueSliced", (None,),
                            ns.Stranger(note="n", inner=ns.Leaf(id=2, name="l", w=0.5))),
        "hidden_err_sliced": ("throwSliced", (1,),
                              ns.HiddenErr(code=1, why="w", extra=2, more=3)),
    }
