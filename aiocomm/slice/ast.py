"""The checked model of a set of Slice files: what the mapping and the codec read.

Every node is a frozen dataclass with the position where it starts. Types refer
to user definitions by their absolute scoped name (``"::M::Point"``), never by
object: classes and interfaces may refer to themselves or to each other, and
names keep the tree acyclic, hashable and printable. ``Unit.definitions`` maps
every scoped name to its node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from .errors import Position, SliceWarning

__all__ = [
    "BUILTIN_NAMES",
    "OBJECT_PROXY",
    "BuiltinType",
    "Class",
    "Const",
    "ConstValue",
    "DataMember",
    "Definition",
    "Dictionary",
    "Enum",
    "EnumValue",
    "Enumerator",
    "Exception",
    "Interface",
    "Module",
    "NamedType",
    "Operation",
    "Param",
    "ProxyType",
    "Sequence",
    "SourceFile",
    "Struct",
    "Type",
    "Unit",
]

# The built-in types. `Object` written by value is the old spelling of `Value`
# (any class instance) and is recorded as `Value`; `Object*` is a ProxyType.
BUILTIN_NAMES = ("bool", "byte", "short", "int", "long", "float", "double", "string", "Value")
BuiltinName = Literal["bool", "byte", "short", "int", "long", "float", "double", "string", "Value"]

# The type id every Ice object has; `Object*` is a proxy to it.
OBJECT_PROXY = "::Ice::Object"

NamedKind = Literal["struct", "class", "enum", "sequence", "dictionary"]


@dataclass(frozen=True, slots=True)
class BuiltinType:
    name: BuiltinName

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class NamedType:
    """A user-defined type used by value; ``kind`` says what ``scoped`` names."""

    scoped: str
    kind: NamedKind

    def __str__(self) -> str:
        return self.scoped


@dataclass(frozen=True, slots=True)
class ProxyType:
    """``I*``: a proxy to interface ``scoped``; ``Object*`` has ``scoped == OBJECT_PROXY``."""

    scoped: str

    def __str__(self) -> str:
        return f"{self.scoped}*"


Type: TypeAlias = BuiltinType | NamedType | ProxyType


@dataclass(frozen=True, slots=True)
class EnumValue:
    """An enumerator used as a constant or default value."""

    enum: str
    name: str
    value: int


# A constant's or default's value, already checked against its type: bool for
# bool, int for the integer types, float for float/double (an integer literal
# is converted), str for string, EnumValue for enums.
ConstValue: TypeAlias = bool | int | float | str | EnumValue


@dataclass(frozen=True, slots=True)
class DataMember:
    name: str
    type: Type
    position: Position
    tag: int | None = None  # set for `optional(tag)` members
    default: ConstValue | None = None
    metadata: tuple[str, ...] = ()
    doc: str | None = None

    @property
    def optional(self) -> bool:
        return self.tag is not None


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type
    position: Position
    out: bool = False
    tag: int | None = None
    metadata: tuple[str, ...] = ()

    @property
    def optional(self) -> bool:
        return self.tag is not None


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    position: Position
    return_type: Type | None  # None for void
    params: tuple[Param, ...] = ()
    return_tag: int | None = None  # `optional(tag) T op(...)`
    idempotent: bool = False
    throws: tuple[str, ...] = ()  # scoped names of exceptions
    # "sliced" or "compact" from this operation's or its interface's
    # metadata; None when neither says (Ice's default is compact).
    format: Literal["sliced", "compact"] | None = None
    metadata: tuple[str, ...] = ()
    doc: str | None = None

    @property
    def in_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.out)

    @property
    def out_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.out)


@dataclass(frozen=True, slots=True)
class _Named:
    name: str
    scoped: str
    position: Position


@dataclass(frozen=True, slots=True)
class Interface(_Named):
    bases: tuple[str, ...] = ()
    operations: tuple[Operation, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Class(_Named):
    base: str | None = None
    members: tuple[DataMember, ...] = ()
    compact_id: int | None = None
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Exception(_Named):  # the Slice construct; shadows the builtin only in here
    base: str | None = None
    members: tuple[DataMember, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Struct(_Named):
    members: tuple[DataMember, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Sequence(_Named):
    element: Type = BuiltinType("byte")
    element_metadata: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Dictionary(_Named):
    key: Type = BuiltinType("string")
    value: Type = BuiltinType("string")
    key_metadata: tuple[str, ...] = ()
    value_metadata: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Enumerator:
    name: str
    value: int
    position: Position
    explicit: bool = False  # written `= value` rather than counted on from the previous one


@dataclass(frozen=True, slots=True)
class Enum(_Named):
    enumerators: tuple[Enumerator, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Const(_Named):
    type: Type = BuiltinType("int")
    value: ConstValue = 0
    literal: str = ""  # as written, e.g. "0x10" or "Color::red"
    metadata: tuple[str, ...] = ()
    doc: str | None = None


@dataclass(frozen=True, slots=True)
class Module(_Named):
    """A module with every opening of it merged, in source order."""

    definitions: tuple[Definition, ...] = ()
    metadata: tuple[str, ...] = ()
    doc: str | None = None

    def walk(self) -> Iterator[Definition]:
        """Every definition below this module, nested modules' included, depth first."""
        for d in self.definitions:
            yield d
            if isinstance(d, Module):
                yield from d.walk()


Definition: TypeAlias = (
    Module | Interface | Class | Exception | Struct | Sequence | Dictionary | Enum | Const
)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file that took part: the main file first, then each include once."""

    path: str
    global_metadata: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()  # resolved paths this file included, in order


@dataclass(frozen=True, slots=True)
class Unit:
    """The checked result of parsing one main file and what it includes."""

    main_file: str
    files: tuple[SourceFile, ...]
    modules: tuple[Module, ...]  # top-level modules, merged across files
    definitions: Mapping[str, Definition] = field(hash=False)
    warnings: tuple[SliceWarning, ...] = ()

    def lookup(self, scoped: str) -> Definition:
        """The definition named by an absolute scoped name; KeyError if there is none."""
        return self.definitions[scoped]

    def defined_in(self, path: str) -> list[Definition]:
        """The non-module definitions whose position is in file ``path``, in source order."""
        return [
            d
            for m in self.modules
            for d in m.walk()
            if not isinstance(d, Module) and d.position.file == path
        ]
