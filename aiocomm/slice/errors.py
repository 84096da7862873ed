"""What the Slice front end reports: one error that stops it, and warnings it collects.

A source position is ``file:line:column`` (both 1-based), as compilers print it,
so editors and terminals can jump to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AiocommError

__all__ = ["Position", "SliceError", "SliceWarning"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where something starts in a Slice source file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class SliceError(AiocommError, ValueError):
    """A Slice file is malformed or violates a rule of the language.

    The front end stops at the first error: the later ones are mostly echoes
    of it (a missing ``;`` makes every following line look wrong), and the
    position of the first is the one worth fixing.
    """

    def __init__(self, message: str, position: Position) -> None:
        self.message = message
        self.position = position
        self.file = position.file
        self.line = position.line
        self.column = position.column
        super().__init__(f"{position}: {message}")


@dataclass(frozen=True, slots=True)
class SliceWarning:
    """Something legal but ignored or discouraged (unknown metadata, a deprecation).

    Collected on the unit; whoever consumes the unit decides how to report it.
    """

    message: str
    position: Position

    def __str__(self) -> str:
        return f"{self.position}: warning: {self.message}"
