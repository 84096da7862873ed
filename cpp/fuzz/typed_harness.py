"""The Python half of fuzz_typed (cpp/fuzz/fuzz_typed.cpp), run by the
interpreter embedded in that target: it loads the test Slice files with
``aiocomm.slice.load`` and lists every codec descriptor their generated
modules build, as decode targets; it also writes the seed corpus.

A target is ``(name, check)``; ``check(data)`` decodes ``data`` with one
descriptor and, when that succeeds, re-encodes the result and decodes it
again: the second encoding must equal the first (a value the decoder built is
one the encoder takes, and the two agree on it), except for what by design
cannot be sent on: a value holding an ``UnknownSlicedValue`` (its slices were
not kept), which the encoder refuses with TypeError. Decoding may fail with
``aiocomm.MarshalError`` only; any other exception is a bug the C++ side
reports as a crash.

Targets (sorted by name, so the fuzzer's first input byte means the same
descriptor in every run of a given checkout):

- ``M._t_X`` / ``M._r_X`` / ``M._p_X`` / ``M._b_X``: ``Type.decode`` of every
  struct, enum, sequence, dictionary, class (by reference: a graph),
  proxy and built-in descriptor of the generated module ``M``;
- ``M._o_I__op.in`` / ``.out``: ``Operation.decode_in`` / ``decode_out`` of
  every operation (optional parameters, class graphs, formats);
- ``M._o_I__op.exc``: ``Operation.decode_exception`` of every operation
  that declares exceptions (any registered exception may arrive).
"""

from __future__ import annotations

import keyword
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiocomm
import aiocomm.slice
from aiocomm.slice import ast
from aiocomm.slice.frontend import parse_file
from aiocomm.slice.loader import install

SOURCE = Path(__file__).resolve().parents[2]
# Every construct of issue 12 item 2 is in interop.ice (loaded through
# interop_aio_only.ice, which adds a derived class and exception), the codec
# oracle's file adds compact ids, class optionals and Object*, everything.ice
# struct-keyed dictionaries and the standard Ice types.
SLICE_FILES = ("tests/slice/interop_aio_only.ice", "tests/codec/Codec.ice",
               "tests/slice/everything.ice")

Check = Callable[[bytes], None]


def _pyname(name: str) -> str:
    return f"_{name}" if keyword.iskeyword(name) else name


class Loaded:
    """One Slice file: its AST and its generated modules."""

    def __init__(self, path: str, index: int) -> None:
        full = SOURCE / path
        self.unit = parse_file(full, include_dirs=[full.parent, SOURCE / "tests/slice/include"])
        self.root = install(self.unit, f"_aiocomm_fuzz_{index}")

    def py(self, scoped: str) -> Any:
        """The Python object generated for a scoped Slice name."""
        obj = self.root
        for part in scoped.strip(":").split("::"):
            obj = getattr(obj, _pyname(part))
        return obj

    def modules(self) -> list[tuple[str, Any]]:
        return [(m.name, getattr(self.root, m.name)) for m in self.unit.modules
                if hasattr(self.root, m.name) and m.name != "Ice"]


class Sampler:
    """Values of Slice types built from the AST: ``full`` sets every optional,
    fills containers and builds class graphs with a cycle and a shared
    instance (of the most derived class known); otherwise the least value."""

    def __init__(self, loaded: Loaded, communicator: aiocomm.Communicator, full: bool) -> None:
        self.loaded = loaded
        self.defs = loaded.unit.definitions
        self.communicator = communicator
        self.full = full
        self.instances: dict[str, Any] = {}

    def derived_most(self, scoped: str | None) -> str | None:
        """The deepest class deriving from ``scoped`` (any class for None)."""
        best, depth = scoped, -1
        for d in self.defs.values():
            if not isinstance(d, ast.Class):
                continue
            chain, n, cur = [], 0, d
            while cur is not None:
                chain.append(cur.scoped)
                n += 1
                cur = self.defs[cur.base] if cur.base else None  # type: ignore[assignment]
            if (scoped is None or scoped in chain) and n > depth:
                best, depth = d.scoped, n
        return best

    def members(self, d: ast.Class | ast.Exception) -> list[ast.DataMember]:
        out: list[ast.DataMember] = []
        cur: Any = d
        while cur is not None:
            out = list(cur.members) + out
            cur = self.defs[cur.base] if cur.base else None
        return out

    def instance(self, scoped: str | None) -> Any:
        if not self.full:
            return None
        actual = self.derived_most(scoped)
        if actual is None:
            return None
        if actual in self.instances:  # shared, or a cycle when still being filled
            return self.instances[actual]
        d = self.defs[actual]
        assert isinstance(d, ast.Class)
        obj = self.loaded.py(actual)()
        self.instances[actual] = obj
        for m in self.members(d):
            setattr(obj, _pyname(m.name), self.value(m.type))
        return obj

    def exception(self, d: ast.Exception) -> BaseException:
        fields = {_pyname(m.name): (None if m.tag is not None and not self.full
                                    else self.value(m.type)) for m in self.members(d)}
        exc: BaseException = self.loaded.py(d.scoped)(**fields)
        return exc

    def value(self, t: ast.Type) -> Any:
        full = self.full
        if isinstance(t, ast.BuiltinType):
            return {"bool": full, "byte": 200 if full else 0, "short": -1234 if full else 0,
                    "int": 0x12345678 if full else 0, "long": -(2**40) if full else 0,
                    "float": 1.5 if full else 0.0, "double": -2.25e-3 if full else 0.0,
                    "string": "h\u00e9llo \u20ac" if full else "",
                    "Value": None}.get(t.name) if t.name != "Value" else self.instance(None)
        if isinstance(t, ast.ProxyType):
            if not full:
                return None
            proxy = self.communicator.proxy("cat/ident -f fac:tcp -h 127.0.0.1 -p 4061 -t 500")
            if t.scoped == ast.OBJECT_PROXY:
                return proxy
            return self.loaded.py(t.scoped + "Prx")(proxy)
        d = self.defs[t.scoped]
        if isinstance(d, ast.Enum):
            return self.loaded.py(d.scoped)[d.enumerators[-1 if full else 0].name]
        if isinstance(d, ast.Struct):
            return self.loaded.py(d.scoped)(**{_pyname(m.name): self.value(m.type)
                                               for m in d.members})
        if isinstance(d, ast.Sequence):
            if d.element == ast.BuiltinType("byte"):
                return bytes(range(7)) if full else b""
            return [self.value(d.element), self.value(d.element)] if full else []
        if isinstance(d, ast.Dictionary):
            if not full:
                return {}
            key = self.value(d.key)
            try:
                return {key: self.value(d.value)}
            except TypeError:  # an unhashable key: none
                return {}
        if isinstance(d, ast.Class):
            return self.instance(d.scoped)
        raise TypeError(f"no sample for {t}")

    def optional(self, p: ast.Param | ast.DataMember) -> Any:
        return None if p.tag is not None and not self.full else self.value(p.type)


def _result(op: ast.Operation, values: list[Any], ret: Any) -> Any:
    """The shape Operation.encode_out takes (the mapping's result shape)."""
    results = ([ret] if op.return_type is not None else []) + values
    if not results:
        return None
    return results[0] if len(results) == 1 else tuple(results)


def _encoded(encode: Callable[[Any], bytes], value: Any) -> bytes | None:
    """``encode(value)``, or None for a value that by design cannot be sent on
    (it holds an UnknownSlicedValue, whose slices were not kept)."""
    try:
        return encode(value)
    except TypeError as error:
        if "UnknownSlicedValue" in str(error):
            return None
        raise


class Harness:
    def __init__(self) -> None:
        # Proxies decode bound to a communicator (its I/O thread idles; the
        # fuzz target destroys it at exit).
        self.communicator = aiocomm.Communicator()
        self.loaded = [Loaded(path, i) for i, path in enumerate(SLICE_FILES)]
        # name -> (check, seeds maker)
        self.entries: dict[str, tuple[Check, Callable[[], list[bytes]]]] = {}
        for loaded in self.loaded:
            self._collect(loaded)

    # ------------------------------------------------------------ targets

    def _type_check(self, t: Any) -> Check:
        comm = self.communicator

        def check(data: bytes) -> None:
            value = t.decode(data, comm)
            first = _encoded(t.encode, value)
            if first is None:
                return
            again = t.encode(t.decode(first, comm))
            if again != first:
                raise AssertionError(f"{t!r}: re-encoding differs:\n {first.hex()}\n {again.hex()}")

        return check

    def _op_check(self, op: Any, kind: str) -> Check:
        comm = self.communicator
        decode = getattr(op, f"decode_{kind}")
        if kind == "in":
            def encode(v: Any) -> bytes:
                return bytes(op.encode_in(v))
        elif kind == "out":
            def encode(v: Any) -> bytes:
                return bytes(op.encode_out(v))
        else:
            def encode(v: Any) -> bytes:
                return bytes(op.encode_exception(v))

        def check(data: bytes) -> None:
            value = decode(data, comm)
            first = _encoded(encode, value)
            if first is None:
                return
            again = encode(decode(first, comm))
            if again != first:
                raise AssertionError(f"{op.name} {kind}: re-encoding differs:\n"
                                     f" {first.hex()}\n {again.hex()}")

        return check

    def _collect(self, loaded: Loaded) -> None:
        codec = aiocomm.slice.runtime.codec
        for top, module in loaded.modules():
            by_flat: dict[str, ast.Definition] = {}
            for d in loaded.unit.definitions.values():
                parts = d.scoped.strip(":").split("::")
                if parts[0] == top:
                    by_flat["__".join(_pyname(p) for p in parts[1:])] = d
            for attr, value in sorted(vars(module).items()):
                prefix, _, flat = attr[:3], None, attr[3:]
                name = f"{top}.{attr}"
                if prefix == "_b_" and any(n.endswith("." + attr) for n in self.entries):
                    continue  # the built-ins are the same in every module: once
                if prefix in ("_t_", "_r_", "_p_", "_b_") and isinstance(value, codec.Type):
                    self.entries[name] = (self._type_check(value),
                                          self._type_seeds(loaded, value, prefix, flat, by_flat))
                elif prefix == "_o_" and isinstance(value, aiocomm.slice.runtime.Op):
                    iface, _, op_name = flat.rpartition("__")
                    d = by_flat.get(iface)
                    op = next(o for o in d.operations if o.name == op_name)  # type: ignore[union-attr]
                    for kind in ("in", "out", "exc") if op.throws else ("in", "out"):
                        self.entries[f"{name}.{kind}"] = (
                            self._op_check(value.codec, "exception" if kind == "exc" else kind),
                            self._op_seeds(loaded, value.codec, op, kind))

    # -------------------------------------------------------------- seeds

    def _samplers(self, loaded: Loaded) -> list[Sampler]:
        return [Sampler(loaded, self.communicator, full) for full in (False, True)]

    def _type_seeds(self, loaded: Loaded, t: Any, prefix: str, flat: str,
                    by_flat: dict[str, ast.Definition]) -> Callable[[], list[bytes]]:
        def seeds() -> list[bytes]:
            out = []
            for s in self._samplers(loaded):
                if prefix == "_b_":
                    ty: ast.Type = ast.BuiltinType(flat)  # type: ignore[arg-type]
                elif prefix == "_p_":
                    ty = ast.ProxyType(by_flat[flat].scoped)
                else:
                    d = by_flat[flat]
                    ty = ast.NamedType(d.scoped, "struct")
                    if isinstance(d, ast.Class):
                        out.append(bytes(t.encode(s.instance(d.scoped))))
                        continue
                out.append(bytes(t.encode(s.value(ty))))
            return out

        return seeds

    def _op_seeds(self, loaded: Loaded, op: Any, d: ast.Operation,
                  kind: str) -> Callable[[], list[bytes]]:
        def seeds() -> list[bytes]:
            out = []
            for s in self._samplers(loaded):
                if kind == "in":
                    out.append(bytes(op.encode_in(tuple(s.optional(p) for p in d.in_params))))
                elif kind == "out":
                    ret = None
                    if d.return_type is not None:
                        ret = None if d.return_tag is not None and not s.full \
                            else s.value(d.return_type)
                    outs = [s.optional(p) for p in d.out_params]
                    out.append(bytes(op.encode_out(_result(d, outs, ret))))
                else:
                    for e in loaded.unit.definitions.values():
                        if isinstance(e, ast.Exception):
                            out.append(bytes(op.encode_exception(s.exception(e))))
            return out

        return seeds

    # ---------------------------------------------------------- interface

    def targets(self, only: str | None) -> list[tuple[str, Check]]:
        names = sorted(self.entries)
        if only:
            names = [n for n in names if n == only]
            if not names:
                raise LookupError(f"no fuzz_typed target named {only!r}")
        return [(n, self.entries[n][0]) for n in names]

    def selector_width(self) -> int:
        """Bytes of the selector in front of every input (from the full list,
        also when a regression replays one target by name)."""
        return 1 if len(self.entries) <= 256 else 2

    def write_seeds(self, directory: str) -> int:
        """Writes the seeds (the selector byte, then an encoding) of every target;
        returns how many. Each seed is checked first (it must decode)."""
        names = sorted(self.entries)
        width = self.selector_width()
        unknown = self._derived_ids()
        os.makedirs(directory, exist_ok=True)
        count = 0
        for index, name in enumerate(names):
            check, seeds = self.entries[name]
            selector = index.to_bytes(width, "big")
            variants: list[bytes] = []
            for data in seeds():
                check(data)
                variants.append(data)
                # The same bytes with a derived type id nobody knows: the
                # receiver slices it off (sliced format) or refuses it.
                for type_id in unknown:
                    if type_id in data:
                        variants.append(data.replace(type_id, type_id[:-1] + b"Z"))
                        break
            for k, data in enumerate(dict.fromkeys(variants)):
                Path(directory, f"{name}.{k}").write_bytes(selector + data)
                count += 1
        return count

    def _derived_ids(self) -> list[bytes]:
        out = []
        for loaded in self.loaded:
            for d in loaded.unit.definitions.values():
                if isinstance(d, ast.Class | ast.Exception) and d.base:
                    out.append(d.scoped.encode())
        return out


_harness: Harness | None = None


def harness() -> Harness:
    global _harness
    if _harness is None:
        _harness = Harness()
    return _harness


def destroy() -> None:
    if _harness is not None:
        _harness.communicator.destroy()
