"""The Python mapping of Slice: turns a checked :class:`~aiocomm.slice.ast.Unit`
into annotated Python source, one module per top-level Slice module.

``aiocomm.slice.load`` executes that source into fresh module objects and
``python -m aiocomm.slice`` writes it to files, so both give the same
definitions. Layout of a generated top-level module ``M``:

- every definition of ``M`` *and of its nested modules* lives in ``M``'s own
  source, nested ones under a flat name (``M::N::T`` is ``N__T``): Slice lets
  a nested module use what its parent defined before it and the parent use
  what the nested module defined, which one Python module per Slice module
  could not import in order. Each nested module is then a module of aliases
  (``M.N.T is M.N__T``), which type checkers follow;
- in the order classes, then codec descriptors, then operations: Python classes
  refer to each other lazily (annotations are strings), descriptors are
  declared before they are defined, so types may refer ahead as Slice allows.

Definitions from the standard ``Ice/*.ice`` files are aiocomm's own
(``aiocomm.slice.ice``); other top-level modules are imported by name from
``import_root`` (empty for the command line's packages).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ast

__all__ = ["BUILTIN_DIR", "GeneratedModule", "generate", "is_builtin"]

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
ICE_MODULE = "aiocomm.slice.ice"  # where the standard Ice definitions live

_INT_TYPES = ("byte", "short", "int", "long")
# Qualified: a Slice parameter or field may be called `str` or `bytes`.
_PY_BUILTIN = {"bool": "builtins.bool", "byte": "builtins.int", "short": "builtins.int",
               "int": "builtins.int", "long": "builtins.int", "float": "builtins.float",
               "double": "builtins.float", "string": "builtins.str"}
_ZERO = {"bool": "False", "byte": "0", "short": "0", "int": "0", "long": "0", "float": "0.0",
         "double": "0.0", "string": '""'}


def is_builtin(path: str) -> bool:
    """Whether ``path`` is one of aiocomm's own standard ``Ice/*.ice`` files."""
    try:
        return Path(path).resolve().is_relative_to(BUILTIN_DIR)
    except (OSError, ValueError):
        return False


@dataclass
class GeneratedModule:
    """The source of one top-level module, and its nested modules' aliases."""

    name: str
    source: str
    # dotted nested module path (e.g. "M.N") -> [(public name, flat name in M)]
    nested: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


# Names the typed proxy and servant bases use themselves: an operation so
# named is escaped like a keyword, as is Ice's Python mapping's habit.
_RESERVED_METHODS = frozenset({"proxy", "oneway", "twoway", "with_timeout", "with_context",
                               "checked_cast", "ice_ping", "type_ids"})


def _method(name: str) -> str:
    return f"_{name}" if name in _RESERVED_METHODS else _pyname(name)


def _pyname(name: str) -> str:
    # Ice's Python mapping escapes Python keywords with a leading underscore.
    return f"_{name}" if keyword.iskeyword(name) else name


def generate(unit: ast.Unit, *, import_root: str = "",
             only: Callable[[str], bool] | None = None) -> list[GeneratedModule]:
    """The Python source of every top-level module of ``unit`` defined outside
    aiocomm's standard Ice files (or of those whose name passes ``only``)."""
    out: list[GeneratedModule] = []
    for module in unit.modules:
        if only is not None and not only(module.name):
            continue
        own = [d for d in module.walk() if not isinstance(d, ast.Module)
               and (only is not None or not is_builtin(d.position.file))]
        if not own:
            continue
        out.append(_ModuleWriter(unit, module, import_root, own).write())
    return out


class _ModuleWriter:
    def __init__(self, unit: ast.Unit, module: ast.Module, import_root: str,
                 own: Sequence[ast.Definition]) -> None:
        self.unit = unit
        self.module = module
        self.top = module.name
        self.import_root = import_root
        self.defs = own
        self.imports: set[str] = set()
        self.lines: list[str] = []

    # ------------------------------------------------------------ naming

    def flat(self, scoped: str) -> str:
        """The flat Python name of a definition inside its top-level module."""
        parts = scoped.strip(":").split("::")[1:]
        return "__".join(_pyname(p) for p in parts)

    def _owner(self, scoped: str) -> str:
        """The prefix (``""`` or ``"Other."``) naming scoped's top-level module from here."""
        definition = self.unit.definitions.get(scoped)
        top = scoped.strip(":").split("::")[0]
        if (definition is not None and is_builtin(definition.position.file)
                and all(d is not definition for d in self.defs)):
            # A standard type used by a file of module Ice that is not one of
            # the standard files (aiocomm's locator): still aiocomm.slice.ice's.
            self.imports.add(f"import {ICE_MODULE} as _Ice")
            return "_Ice."
        if top == self.top:
            return ""
        alias = f"_m_{top}"
        target = f"{self.import_root}.{top}" if self.import_root else top
        self.imports.add(f"import {target} as {alias}")
        return alias + "."

    def ref(self, scoped: str, prefix: str = "") -> str:
        return self._owner(scoped) + prefix + self.flat(scoped)

    # ------------------------------------------------------------- types

    def py_type(self, t: ast.Type, *, accept: bool = False, optional: bool = False) -> str:
        """The annotation of a value of Slice type ``t``; ``accept`` for what a
        caller may pass (any sequence, mapping or bytes-like)."""
        text = self._py_type(t, accept)
        if optional and not text.endswith("| None"):
            text += " | None"
        return text

    def _py_type(self, t: ast.Type, accept: bool) -> str:
        if isinstance(t, ast.BuiltinType):
            if t.name == "Value":
                return "_rt.Value | None"
            return _PY_BUILTIN[t.name]
        if isinstance(t, ast.ProxyType):
            if t.scoped == ast.OBJECT_PROXY:
                return "aiocomm.Proxy | _rt.ObjectPrx | None" if accept else "aiocomm.Proxy | None"
            return self.ref(t.scoped) + "Prx | None"
        node = self.unit.lookup(t.scoped)
        if isinstance(node, ast.Sequence):
            element = node.element
            if isinstance(element, ast.BuiltinType) and element.name == "byte":
                return ("builtins.bytes | builtins.bytearray | builtins.memoryview" if accept
                        else "builtins.bytes")
            inner = self._py_type(element, accept)
            return f"Sequence[{inner}]" if accept else f"builtins.list[{inner}]"
        if isinstance(node, ast.Dictionary):
            key = self._py_type(node.key, False)
            value = self._py_type(node.value, accept)
            return f"Mapping[{key}, {value}]" if accept else f"builtins.dict[{key}, {value}]"
        if isinstance(node, ast.Class):
            return self.ref(t.scoped) + " | None"
        return self.ref(t.scoped)

    def desc(self, t: ast.Type) -> str:
        """The codec descriptor expression of Slice type ``t``."""
        if isinstance(t, ast.BuiltinType):
            return "_b_Value" if t.name == "Value" else f"_b_{t.name}"
        if isinstance(t, ast.ProxyType):
            if t.scoped == ast.OBJECT_PROXY:
                return "_b_ObjectPrx"
            return self.ref(t.scoped, "_p_")
        node = self.unit.lookup(t.scoped)
        if isinstance(node, ast.Class):
            return self.ref(t.scoped, "_r_")
        return self.ref(t.scoped, "_t_")

    def default(self, member: ast.DataMember) -> tuple[str, bool]:
        """A member's default expression, and whether it must be made per instance."""
        if member.optional:
            return "None", False
        if member.default is not None:
            return self.const(member.default, member.type), False
        t = member.type
        if isinstance(t, ast.BuiltinType):
            return (_ZERO[t.name], False) if t.name in _ZERO else ("None", False)
        if isinstance(t, ast.ProxyType):
            return "None", False
        node = self.unit.lookup(t.scoped)
        if isinstance(node, ast.Enum):
            first = min(node.enumerators, key=lambda e: e.value)
            return f"{self.ref(t.scoped)}.{_pyname(first.name)}", False
        if isinstance(node, ast.Struct):
            return self.ref(t.scoped), True
        if isinstance(node, ast.Sequence):
            element = node.element
            if isinstance(element, ast.BuiltinType) and element.name == "byte":
                return 'b""', False
            return "list", True
        if isinstance(node, ast.Dictionary):
            return "dict", True
        return "None", False  # a class instance

    def const(self, value: ast.ConstValue, t: ast.Type) -> str:
        if isinstance(value, ast.EnumValue):
            return f"{self.ref(value.enum)}.{_pyname(value.name)}"
        if isinstance(t, ast.BuiltinType) and t.name in ("float", "double"):
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                return f'float("{number}")'
            return repr(number)
        return repr(value)

    def hashable(self, t: ast.Type, seen: frozenset[str] = frozenset()) -> bool:
        if isinstance(t, ast.BuiltinType):
            return t.name != "Value"
        if isinstance(t, ast.ProxyType):
            return True
        node = self.unit.lookup(t.scoped)
        if isinstance(node, ast.Enum):
            return True
        if isinstance(node, ast.Struct) and t.scoped not in seen:
            return all(self.hashable(m.type, seen | {t.scoped}) for m in node.members)
        return False

    # ------------------------------------------------------------ output

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def of(self, kind: type[ast.Definition]) -> Iterator[ast.Definition]:
        return (d for d in self.defs if isinstance(d, kind))

    def write(self) -> GeneratedModule:
        self.emit_enums()
        self.emit_data()
        self.emit_consts()
        self.emit_proxies()
        self.emit_servants()
        self.emit_descriptors()
        self.emit_operations()
        self.emit_names()
        header = [
            f'"""Generated by aiocomm.slice from Slice module {self.top}: do not edit."""',
            "",
            "# ruff: noqa",
            "from __future__ import annotations",
            "",
            "import builtins",
            "import dataclasses",
            "import enum",
            "from collections.abc import Awaitable, Coroutine, Mapping, Sequence",
            "from typing import Any, ClassVar, cast",
            "",
            "import aiocomm",
            "from aiocomm.slice import runtime as _rt",
            *sorted(self.imports),
            "",
            "_codec = _rt.codec",
            *(f'_b_{n} = _codec.builtin("{n}")' for n in _PY_BUILTIN),
            "_b_Value = _codec.class_ref(None)",
            "_b_ObjectPrx = _codec.proxy(None)",
            "",
        ]
        names = sorted(self.public_names())
        body = [*header, "__all__ = [", *(f'    "{n}",' for n in names if "__" not in n), "]",
                "", *self.lines]
        nested: dict[str, list[tuple[str, str]]] = {}
        for d in self.defs:
            parts = d.scoped.strip(":").split("::")
            if len(parts) > 2 and not isinstance(d, ast.Sequence | ast.Dictionary):
                path = ".".join(parts[:-1])
                flat = self.flat(d.scoped)
                nested.setdefault(path, []).append((_pyname(parts[-1]), flat))
                if isinstance(d, ast.Interface):
                    nested[path].append((_pyname(parts[-1]) + "Prx", flat + "Prx"))
        # Nested modules with no definitions of their own still exist.
        for m in self.module.walk():
            if isinstance(m, ast.Module):
                nested.setdefault(m.scoped.strip(":").replace("::", "."), [])
        text = "\n".join(body).rstrip() + "\n"
        return GeneratedModule(self.top, text, nested)

    def public_names(self) -> Iterator[str]:
        for d in self.defs:
            if isinstance(d, ast.Sequence | ast.Dictionary):
                continue
            yield self.flat(d.scoped)
            if isinstance(d, ast.Interface):
                yield self.flat(d.scoped) + "Prx"
        for m in self.module.definitions:
            if isinstance(m, ast.Module):
                yield _pyname(m.name)

    def emit_names(self) -> None:
        """Nested modules' classes show their Slice name, not their flat one."""
        for d in self.defs:
            if d.scoped.count("::") > 2 and not isinstance(
                    d, ast.Const | ast.Sequence | ast.Dictionary):
                names = [self.flat(d.scoped)]
                if isinstance(d, ast.Interface):
                    names.append(names[0] + "Prx")
                for flat in names:
                    public = flat.rsplit("__", 1)[1]
                    self.emit(f'{flat}.__name__ = {flat}.__qualname__ = "{public}"')

    # ---------------------------------------------------------- sections

    def emit_enums(self) -> None:
        for e in self.of(ast.Enum):
            assert isinstance(e, ast.Enum)
            self.emit(f"class {self.flat(e.scoped)}(enum.IntEnum):")
            self.doc(e.doc)
            for value in e.enumerators:
                self.emit(f"    {_pyname(value.name)} = {value.value}")
            if not e.enumerators:
                self.emit("    pass")
            self.emit("", "")

    def doc(self, text: str | None) -> None:
        if text:
            cleaned = " ".join(text.split()).replace("\\", "\\\\").replace('"""', "'''")
            self.emit(f'    """{cleaned}"""')

    def emit_data(self) -> None:
        # Source order: a class or exception's base is defined before it.
        for d in self.defs:
            if isinstance(d, ast.Struct):
                self.emit_struct(d)
            elif isinstance(d, ast.Class):
                self.emit_class(d, "_rt.Value", d.base, "Value")
            elif isinstance(d, ast.Exception):
                self.emit_class(d, "_rt.UserException", d.base, "UserException")

    def emit_struct(self, s: ast.Struct) -> None:
        hashable = all(self.hashable(m.type) for m in s.members)
        self.emit("@dataclasses.dataclass(unsafe_hash=True)" if hashable
                  else "@dataclasses.dataclass")
        self.emit(f"class {self.flat(s.scoped)}:")
        self.doc(s.doc)
        for m in s.members:
            annotation = self.py_type(m.type, optional=m.optional)
            value, per_instance = self.default(m)
            if per_instance:
                value = f"dataclasses.field(default_factory={value})"
            self.emit(f"    {_pyname(m.name)}: {annotation} = {value}")
        if not s.members:
            self.emit("    pass")
        self.emit("", "")

    def members_of(self, node: ast.Class | ast.Exception) -> list[ast.DataMember]:
        chain: list[ast.DataMember] = []
        base = node.base
        while base is not None:
            parent = self.unit.lookup(base)
            assert isinstance(parent, ast.Class | ast.Exception)
            chain[:0] = parent.members
            base = parent.base
        return chain + list(node.members)

    def emit_class(self, c: ast.Class | ast.Exception, root: str, base: str | None,
                   kind: str) -> None:
        name = self.flat(c.scoped)
        parent = self.ref(base) if base is not None else root
        members = self.members_of(c)
        self.emit(f"class {name}({parent}):")
        self.doc(c.doc)
        self.emit(f'    _ice_id = "{c.scoped}"')
        fields = "".join(f'"{_pyname(m.name)}", ' for m in members)
        self.emit(f"    _ice_fields: ClassVar[builtins.tuple[builtins.str, ...]] = ({fields})")
        for m in c.members:
            self.emit(f"    {_pyname(m.name)}: {self.py_type(m.type, optional=m.optional)}")
        params = []
        for m in members:
            annotation = self.py_type(m.type, optional=m.optional)
            value, per_instance = self.default(m)
            if per_instance:
                annotation = f"{annotation} | None"
                value = "None"
            params.append(f"{_pyname(m.name)}: {annotation} = {value}")
        # Keyword construction, and positional too (base fields first), as Ice's
        # own Python mapping allows.
        signature = ", ".join(["self", *params])
        self.emit("", f"    def __init__({signature}) -> None:")
        inherited = members[: len(members) - len(c.members)]
        if base is not None:
            args = ", ".join(f"{_pyname(m.name)}={_pyname(m.name)}" for m in inherited)
            self.emit(f"        super().__init__({args})")
        elif kind == "UserException":
            self.emit("        super().__init__()")
        for m in c.members:
            value, per_instance = self.default(m)
            n = _pyname(m.name)
            if per_instance:
                self.emit(f"        self.{n} = {value}() if {n} is None else {n}")
            else:
                self.emit(f"        self.{n} = {n}")
        if not c.members and base is None and kind != "UserException":
            self.emit("        pass")
        self.emit("", "")

    def emit_consts(self) -> None:
        for c in self.of(ast.Const):
            assert isinstance(c, ast.Const)
            annotation = self.py_type(c.type)
            self.emit(f"{self.flat(c.scoped)}: {annotation} = {self.const(c.value, c.type)}")
        self.emit("", "")

    # -------------------------------------------------------- interfaces

    def op_shape(self, op: ast.Operation, *, accept: bool) -> str:
        results: list[str] = []
        if op.return_type is not None:
            results.append(self.py_type(op.return_type, accept=accept,
                                        optional=op.return_tag is not None))
        results.extend(self.py_type(p.type, accept=accept, optional=p.optional)
                       for p in op.out_params)
        if not results:
            return "None"
        if len(results) == 1:
            return results[0]
        return f"builtins.tuple[{', '.join(results)}]"

    def emit_proxies(self) -> None:
        for i in self.of(ast.Interface):
            assert isinstance(i, ast.Interface)
            name = self.flat(i.scoped)
            bases = ", ".join(self.ref(b) + "Prx" for b in i.bases) or "_rt.ObjectPrx"
            self.emit(f"class {name}Prx({bases}):")
            self.doc(i.doc)
            self.emit("    __slots__ = ()", f'    _ice_id = "{i.scoped}"')
            for op in i.operations:
                params = [_pyname(p.name) + ": "
                          + self.py_type(p.type, accept=True, optional=p.optional)
                          for p in op.in_params]
                args = "".join(f"{_pyname(p.name)}, " for p in op.in_params)
                shape = self.op_shape(op, accept=False)
                signature = ", ".join(
                    ["self", *params, "context: Mapping[str, str] | None = None"])
                # A plain method returning _ice_invoke's coroutine: awaited, it
                # is the call (one coroutine per call, not two).
                call = f"self._ice_invoke(_o_{name}__{op.name}, ({args}), context)"
                self.emit("", f"    def {_method(op.name)}({signature}) "
                          f"-> Coroutine[Any, Any, {shape}]:")
                self.doc(op.doc)
                self.emit(f"        return {call}")
            self.emit("", "")

    def type_ids(self, i: ast.Interface) -> list[str]:
        ids: set[str] = set()
        todo = [i.scoped]
        while todo:
            scoped = todo.pop()
            if scoped in ids:
                continue
            ids.add(scoped)
            node = self.unit.lookup(scoped)
            assert isinstance(node, ast.Interface)
            todo.extend(node.bases)
        ids.discard(i.scoped)
        return [i.scoped, *sorted(ids | {ast.OBJECT_PROXY})]

    def emit_servants(self) -> None:
        for i in self.of(ast.Interface):
            assert isinstance(i, ast.Interface)
            name = self.flat(i.scoped)
            bases = ", ".join(self.ref(b) for b in i.bases) or "_rt.Servant"
            self.emit(f"class {name}({bases}):")
            self.doc(i.doc)
            ids = "".join(f'"{t}", ' for t in self.type_ids(i))
            self.emit(f"    type_ids: ClassVar[builtins.tuple[builtins.str, ...]] = ({ids})")
            for op in i.operations:
                params = [f"{_pyname(p.name)}: {self.py_type(p.type, optional=p.optional)}"
                          for p in op.in_params]
                shape = self.op_shape(op, accept=True)
                signature = ", ".join(["self", *params, "current: aiocomm.Current"])
                self.emit("", f"    def {_method(op.name)}({signature}) -> "
                              f"{shape} | Awaitable[{shape}]:")
                self.emit("        raise _rt.unimplemented(current)")
            self.emit("", "")

    # ------------------------------------------------------- descriptors

    def emit_descriptors(self) -> None:
        self.emit("# Codec descriptors: declared first, defined once all exist.")
        for d in self.defs:
            name = self.flat(d.scoped)
            if isinstance(d, ast.Enum):
                self.emit(f"_t_{name} = _codec.enum({{m.value: m for m in {name}}})")
            elif isinstance(d, ast.Struct):
                self.emit(f'_t_{name} = _codec.struct("{d.scoped}")')
            elif isinstance(d, ast.Class):
                compact = -1 if d.compact_id is None else d.compact_id
                self.emit(f'_t_{name} = _codec.value_class("{d.scoped}", {compact})',
                          f"_r_{name} = _codec.class_ref(_t_{name})")
            elif isinstance(d, ast.Exception):
                self.emit(f'_t_{name} = _codec.exception("{d.scoped}")')
            elif isinstance(d, ast.Interface):
                self.emit(f"_p_{name} = _codec.proxy({name}Prx)")
        done: set[str] = set()
        for d in self.defs:
            self.emit_container(d, done)
        for d in self.defs:
            name = self.flat(d.scoped)
            if isinstance(d, ast.Struct):
                members = "".join(f'("{_pyname(m.name)}", {self.desc(m.type)}), '
                                  for m in d.members)
                self.emit(f"_t_{name}.define({name}, [{members}])")
            elif isinstance(d, ast.Class | ast.Exception):
                members = "".join(f'("{_pyname(m.name)}", {self.desc(m.type)}, '
                                  f'{-1 if m.tag is None else m.tag}), ' for m in d.members)
                base = self.ref(d.base, "_t_") if d.base is not None else "None"
                self.emit(f"_t_{name}.define({name}, {base}, [{members}])")
        self.emit("", "")

    def emit_container(self, d: ast.Definition, done: set[str]) -> None:
        """A sequence or dictionary descriptor, after those it is made of."""
        if not isinstance(d, ast.Sequence | ast.Dictionary) or d.scoped in done:
            return
        done.add(d.scoped)
        parts = [d.element] if isinstance(d, ast.Sequence) else [d.key, d.value]
        for t in parts:
            if isinstance(t, ast.NamedType) and self._owner(t.scoped) == "":
                self.emit_container(self.unit.lookup(t.scoped), done)
        name = self.flat(d.scoped)
        if isinstance(d, ast.Sequence):
            self.emit(f"_t_{name} = _codec.sequence({self.desc(d.element)})")
        else:
            self.emit(f"_t_{name} = _codec.dictionary({self.desc(d.key)}, "
                      f"{self.desc(d.value)})")

    def emit_operations(self) -> None:
        for i in self.of(ast.Interface):
            assert isinstance(i, ast.Interface)
            name = self.flat(i.scoped)
            for op in i.operations:
                ins = "".join(f"({self.desc(p.type)}, {-1 if p.tag is None else p.tag}), "
                              for p in op.in_params)
                outs = "".join(f"({self.desc(p.type)}, {-1 if p.tag is None else p.tag}), "
                               for p in op.out_params)
                ret = "None" if op.return_type is None else (
                    f"({self.desc(op.return_type)}, "
                    f"{-1 if op.return_tag is None else op.return_tag})")
                throws = "".join(f"{self.ref(t, '_t_')}, " for t in op.throws)
                classes = "".join(f"{self.ref(t)}, " for t in op.throws)
                fmt = "None" if op.format is None else f'"{op.format}"'
                self.emit(
                    f"_o_{name}__{op.name} = _rt.Op(",
                    f'    "{op.name}",',
                    f'    _codec.operation("{op.name}", [{ins}], [{outs}], {ret}, '
                    f"[{throws}], {fmt}),",
                    f"    idempotent={op.idempotent}, throws=({classes}),"
                    + ("" if _method(op.name) == op.name else f' method="{_method(op.name)}",'),
                    ")",
                )
            ops = "".join(f"_o_{name}__{op.name}, " for op in i.operations)
            self.emit(f"_rt.bind_operations({name}, [{ops}])", "")
