"""Slice's semantic rules that look at a finished piece of the model.

The parser calls these as soon as the piece they judge is complete, so each
error points at the construct that breaks the rule. Name resolution and
redefinition live in ``scope``; this module never looks names up itself but
gets what it needs as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from .ast import (
    BuiltinType,
    Class,
    ConstValue,
    DataMember,
    Definition,
    Dictionary,
    Enum,
    EnumValue,
    Exception,
    Interface,
    NamedType,
    Operation,
    Param,
    ProxyType,
    Sequence,
    Struct,
    Type,
)
from .errors import Position, SliceError, SliceWarning

__all__ = [
    "INTEGER_RANGES",
    "MAX_TAG",
    "check_class_members",
    "check_dictionary_key",
    "check_interface_operations",
    "check_tags",
    "coerce_value",
    "metadata_warnings",
]

Lookup = Callable[[str], Definition | None]

INTEGER_RANGES = {
    "byte": (0, 255),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
MAX_TAG = 2**31 - 1
_FLOAT_MAX = 3.4028234663852886e38

# Metadata with a meaning for aiocomm or for the Python mapping. Anything else
# is kept on the node and reported once as a warning, not an error: .ice files
# written for other languages carry their metadata, and it is harmless here.
_KNOWN_PREFIXES = ("format:", "python:", "deprecate")
_KNOWN = frozenset({"amd", "ami", "deprecated", "marshaled-result"})
_KNOWN_GLOBAL_PREFIXES = ("python:", "suppress-warning")
_KNOWN_GLOBAL = frozenset({"underscore", "ice-prefix"})
_FORMATS = frozenset({"format:sliced", "format:compact", "format:default"})


def metadata_warnings(
    directives: Iterable[str], position: Position, *, global_: bool = False
) -> list[SliceWarning]:
    out = []
    prefixes = _KNOWN_GLOBAL_PREFIXES if global_ else _KNOWN_PREFIXES
    known = _KNOWN_GLOBAL if global_ else _KNOWN
    for d in directives:
        if d.startswith("format:") and not global_ and d not in _FORMATS:
            out.append(SliceWarning(f"ignoring metadata '{d}': the formats are format:sliced, "
                                    "format:compact and format:default", position))  # fmt: skip
        elif d not in known and not d.startswith(prefixes):
            out.append(SliceWarning(f"ignoring metadata '{d}': it means nothing to aiocomm",
                                    position))  # fmt: skip
    return out


def coerce_value(
    type_: Type, value: ConstValue, spelled: str, what: str, position: Position, lookup: Lookup
) -> ConstValue:
    """Checks that ``value`` (a literal, an enumerator or another constant's value)
    suits ``type_``, and converts integers to float for float/double."""
    if isinstance(type_, BuiltinType):
        name = type_.name
        if name == "bool":
            if isinstance(value, bool):
                return value
        elif name in INTEGER_RANGES:
            if isinstance(value, int) and not isinstance(value, bool):
                low, high = INTEGER_RANGES[name]
                if not low <= value <= high:
                    raise SliceError(f"value {spelled} of {what} is out of range for {name} "
                                     f"({low}..{high})", position)  # fmt: skip
                return value
        elif name in ("float", "double"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                result = float(value)
                limit = _FLOAT_MAX if name == "float" else math.inf
                if math.isinf(result) or abs(result) > limit:
                    raise SliceError(f"value {spelled} of {what} is out of range for {name}",
                                     position)  # fmt: skip
                return result
        elif name == "string":
            if isinstance(value, str):
                return value
        else:
            raise SliceError(f"{what} cannot have a value: its type is {name}", position)
        raise SliceError(
            f"{what} has type {name}, which {spelled} ({_kind_of(value)}) is not", position
        )
    if isinstance(type_, NamedType) and type_.kind == "enum":
        if isinstance(value, EnumValue) and value.enum == type_.scoped:
            return value
        raise SliceError(
            f"{what} has enum type {type_.scoped}, and {spelled} is not one of its enumerators",
            position,
        )
    raise SliceError(f"{what} cannot have a value: its type is {type_}", position)


def _kind_of(value: ConstValue) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a floating-point number"
    if isinstance(value, str):
        return "a string"
    return f"an enumerator of {value.enum}"


def check_tags(
    items: Iterable[DataMember | Param], position_of_return: Position | None = None,
    return_tag: int | None = None,
) -> None:  # fmt: skip
    """Tags are unique among one operation's parameters and return value, or among
    one class's or exception's own members (each slice has its own tags)."""
    seen: dict[int, str] = {}
    if return_tag is not None:
        seen[return_tag] = "the return value"
    for item in items:
        if item.tag is None:
            continue
        if item.tag in seen:
            raise SliceError(f"tag {item.tag} of '{item.name}' is already used by {seen[item.tag]}",
                             item.position)  # fmt: skip
        seen[item.tag] = f"'{item.name}'"


def check_dictionary_key(
    type_: Type, position: Position, lookup: Lookup, warnings: list[SliceWarning]
) -> None:
    """Slice allows integral, bool, string and enum keys, and structs made of them;
    sequences of them are deprecated. Floating point, classes and proxies are out."""
    reason = _illegal_key(type_, lookup, warnings, position)
    if reason is not None:
        raise SliceError(f"illegal dictionary key type {type_}: {reason}", position)


def _illegal_key(
    type_: Type, lookup: Lookup, warnings: list[SliceWarning], position: Position
) -> str | None:
    if isinstance(type_, BuiltinType):
        if type_.name in ("float", "double"):
            return "floating-point keys do not compare reliably"
        if type_.name == "Value":
            return "class instances cannot be keys"
        return None
    if isinstance(type_, ProxyType):
        return "proxies cannot be keys"
    node = lookup(type_.scoped)
    if isinstance(node, Struct):
        for m in node.members:
            reason = _illegal_key(m.type, lookup, warnings, position)
            if reason is not None:
                return f"its member '{m.name}' is a {m.type}, and {reason}"
        return None
    if isinstance(node, Sequence):
        warnings.append(SliceWarning("sequences as dictionary keys are deprecated", position))
        return _illegal_key(node.element, lookup, warnings, position)
    if isinstance(node, Enum):
        return None
    if isinstance(node, Dictionary):
        return "dictionaries cannot be keys"
    return "class instances cannot be keys"


def ancestors(interface: Interface, lookup: Lookup) -> list[Interface]:
    """Every interface ``interface`` inherits from, each once, nearest first."""
    out: list[Interface] = []
    pending = list(interface.bases)
    while pending:
        node = lookup(pending.pop(0))
        if isinstance(node, Interface) and node not in out:
            out.append(node)
            pending.extend(node.bases)
    return out


def check_interface_operations(
    name: str, bases: list[Interface], operations: list[Operation], lookup: Lookup
) -> None:
    """No operation redefines an inherited one, and no two unrelated bases bring
    operations of the same name (the servant could implement only one)."""
    inherited: dict[str, tuple[Operation, Interface]] = {}
    for base in bases:
        for owner in [base, *ancestors(base, lookup)]:
            for op in owner.operations:
                seen = inherited.get(op.name.lower())
                if seen is not None and seen[1].scoped != owner.scoped:
                    raise SliceError(
                        f"ambiguous multiple inheritance: '{name}' inherits operation "
                        f"'{op.name}' from both {seen[1].scoped} and {owner.scoped}",
                        operations[0].position if operations else owner.position,
                    )
                inherited[op.name.lower()] = (op, owner)
    for op in operations:
        seen = inherited.get(op.name.lower())
        if seen is not None:
            raise SliceError(
                f"operation '{op.name}' redefines operation '{seen[0].name}' of base "
                f"interface {seen[1].scoped}",
                op.position,
            )


def check_class_members(base: str | None, members: list[DataMember], lookup: Lookup) -> None:
    """A member may not hide (or differ only in case from) one of a base's."""
    while base is not None:
        node = lookup(base)
        if not isinstance(node, (Class, Exception)):
            return
        names = {m.name.lower(): m.name for m in node.members}
        for m in members:
            if m.name.lower() in names:
                raise SliceError(
                    f"data member '{m.name}' redefines data member '{names[m.name.lower()]}' "
                    f"of base {node.scoped}",
                    m.position,
                )
        base = node.base
