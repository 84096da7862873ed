"""The symbol table: which names each scope defines, and Slice's rules for finding them.

Slice compares names case-insensitively for collisions, so the table is keyed by
lower-cased name, and a use spelled with other capitalization than the
definition is an error rather than a second name.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ast import Definition
from .errors import Position, SliceError

__all__ = ["Scopes", "Symbol"]

_ARTICLE = {"enumerator": "an", "exception": "an", "enum": "an", "interface": "an"}


@dataclass
class Symbol:
    """One named thing. ``node`` is None while its body is being parsed, and for
    a class or interface that is only forward-declared so far."""

    name: str
    scoped: str
    kind: str  # module, struct, class, interface, exception, enum, sequence, dictionary, const
    position: Position
    node: Definition | None = None
    enum_value: int | None = None  # for kind == "enumerator"

    def describe(self) -> str:
        return f"{self.kind} '{self.name}'"


def article(kind: str) -> str:
    return _ARTICLE.get(kind, "a")


class Scopes:
    def __init__(self) -> None:
        # container scoped name ("" is the global scope) -> lower-cased name -> symbol
        self.table: dict[str, dict[str, Symbol]] = {"": {}}

    def declare(self, container: str, name: str, kind: str, position: Position) -> Symbol:
        """Adds ``name`` to ``container``, or returns the existing symbol when Slice
        allows a second mention (reopening a module, defining a forward-declared
        class or interface); the caller checks what the second mention may do."""
        names = self.table.setdefault(container, {})
        _check_enclosing(container, name, kind, position)
        existing = names.get(name.lower())
        if existing is not None:
            if existing.name != name:
                raise SliceError(
                    f"{kind} '{name}' differs only in capitalization from "
                    f"{existing.describe()} defined at {existing.position}",
                    position,
                )
            if existing.kind != kind:
                raise SliceError(
                    f"'{name}' was defined as {article(existing.kind)} {existing.kind} at "
                    f"{existing.position} and cannot be redefined as {article(kind)} {kind}",
                    position,
                )
            return existing
        symbol = Symbol(name, f"{container}::{name}", kind, position)
        names[name.lower()] = symbol
        self.table.setdefault(symbol.scoped, {})
        return symbol

    def lookup(self, container: str, name: str, position: Position) -> Symbol:
        """Resolves a (possibly scoped) name as written, from inside ``container``:
        ``::A::B`` from the global scope, anything else from the innermost scope
        outwards."""
        parts = name.split("::")
        if parts[0] == "":
            found = self._walk("", parts[1:], position)
        else:
            found = None
            scope: str | None = container
            while scope is not None and found is None:
                found = self._walk(scope, parts, position)
                scope = None if scope == "" else scope.rsplit("::", 1)[0]
        if found is None:
            raise SliceError(f"'{name}' is not defined", position)
        return found

    def _walk(self, scope: str, parts: list[str], position: Position) -> Symbol | None:
        symbol: Symbol | None = None
        for part in parts:
            names = self.table.get(scope if symbol is None else symbol.scoped, {})
            symbol = names.get(part.lower())
            if symbol is None:
                return None
            if symbol.name != part:
                raise SliceError(
                    f"'{part}' is capitalized inconsistently with {symbol.describe()} "
                    f"defined at {symbol.position}",
                    position,
                )
        return symbol


def _check_enclosing(container: str, name: str, kind: str, position: Position) -> None:
    enclosing = container.rsplit("::", 1)[-1]
    if enclosing and enclosing.lower() == name.lower() and enclosing != name:
        raise SliceError(
            f"{kind} '{name}' differs only in capitalization from its enclosing scope "
            f"'{enclosing}'",
            position,
        )
