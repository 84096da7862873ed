"""The subset of the C preprocessor that real .ice files use, and include resolution.

Supported: ``#pragma once``, ``#include "f.ice"`` / ``<f.ice>``, ``#define``,
``#undef``, ``#ifdef``, ``#ifndef``, ``#if`` / ``#elif`` with ``defined``, ``!``,
``&&``, ``||``, comparisons and integers, ``#else``, ``#endif``, ``#error``.
Macros are not expanded in Slice text: .ice files use them only as guards and
switches. Directive lines are blanked rather than removed, so every token keeps
its line and column in its own file.

The standard ``Ice/Identity.ice``, ``Ice/BuiltinSequences.ice`` and
``Ice/Context.ice`` resolve to aiocomm's own definitions shipped in
``aiocomm/slice/builtin``, before the include path is searched: aiocomm needs
only those few types and must not depend on an Ice installation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import Position, SliceError
from .lexer import Token, tokenize

__all__ = ["BUILTIN_INCLUDES", "Preprocessed", "preprocess"]

BUILTIN_INCLUDES = frozenset({"Ice/Identity.ice", "Ice/BuiltinSequences.ice", "Ice/Context.ice"})

# Defined for every file: Ice's own compilers define their `__SLICE2XX__`, and
# .ice files written for several languages branch on it to pick Python's
# metadata; aiocomm generates Python, so it takes Python's branch.
_PREDEFINED = {"__SLICE2PY__": "1", "__AIOCOMM__": "1"}
_MAX_DEPTH = 64
_DIRECTIVE = re.compile(r"^[ \t]*#[ \t]*(\w*)(.*)$")
_INCLUDE = re.compile(r'^\s*(?:"([^"]+)"|<([^>]+)>)\s*(?://.*)?$')
_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?://.*)?$")
_DEFINE = re.compile(r"^\s*([A-Za-z_]\w*)(?:\s+(.*?))?\s*$")


@dataclass
class Preprocessed:
    """All tokens, included files' spliced in where they were included, and the files."""

    tokens: list[Token]
    # path -> resolved paths it included, in first-seen order (main file first)
    files: dict[str, list[str]] = field(default_factory=dict)


def preprocess(
    text: str, filename: str, include_dirs: Sequence[str | os.PathLike[str]]
) -> Preprocessed:
    """Runs the directives of ``text`` (file ``filename``) and of what it includes."""
    state = _State([Path(d) for d in include_dirs])
    tokens = state.process(text, filename, Path(filename).parent, 0)
    return Preprocessed(tokens, state.files)


class _State:
    def __init__(self, include_dirs: list[Path]) -> None:
        self.include_dirs = include_dirs
        self.macros: dict[str, str] = dict(_PREDEFINED)
        self.once: set[str] = set()
        self.files: dict[str, list[str]] = {}

    def process(self, text: str, file: str, directory: Path, depth: int) -> list[Token]:
        self.files.setdefault(file, [])
        lines = text.split("\n")
        # (line number after which to splice, tokens of the included file)
        splices: list[tuple[int, list[Token]]] = []
        # Each open conditional: [enclosing active, some branch taken, this branch active]
        stack: list[list[bool]] = []
        in_comment = False
        for index, line in enumerate(lines):
            number = index + 1
            active = not stack or stack[-1][2]
            match = None if in_comment else _DIRECTIVE.match(line)
            if match is None:
                if not active:
                    lines[index] = ""
                else:
                    in_comment = _ends_in_comment(line, in_comment)
                continue
            lines[index] = ""
            name, rest = match.group(1), match.group(2)
            col = line.index("#") + 1
            where = Position(file, number, col)
            if name in ("ifdef", "ifndef"):
                m = _NAME.match(rest)
                if m is None:
                    raise SliceError(f"#{name} expects one macro name", where)
                defined = m.group(1) in self.macros
                cond = defined if name == "ifdef" else not defined
                stack.append([active, active and cond, active and cond])
            elif name == "if":
                cond = active and self.evaluate(rest, where)
                stack.append([active, cond, cond])
            elif name == "elif":
                if not stack:
                    raise SliceError("#elif without #if", where)
                outer, taken, _ = stack[-1]
                cond = outer and not taken and self.evaluate(rest, where)
                stack[-1] = [outer, taken or cond, cond]
            elif name == "else":
                if not stack:
                    raise SliceError("#else without #if", where)
                outer, taken, _ = stack[-1]
                stack[-1] = [outer, True, outer and not taken]
            elif name == "endif":
                if not stack:
                    raise SliceError("#endif without #if", where)
                stack.pop()
            elif not active:
                continue
            elif name == "define":
                m = _DEFINE.match(rest)
                if m is None:
                    raise SliceError("#define expects a macro name", where)
                self.macros[m.group(1)] = (m.group(2) or "").strip()
            elif name == "undef":
                m = _NAME.match(rest)
                if m is None:
                    raise SliceError("#undef expects one macro name", where)
                self.macros.pop(m.group(1), None)
            elif name == "pragma":
                if rest.split()[:1] == ["once"]:
                    self.once.add(_key(file))
                # Other pragmas mean nothing to Slice; compilers ignore them too.
            elif name == "include":
                m = _INCLUDE.match(rest)
                if m is None:
                    raise SliceError('#include expects "file" or <file>', where)
                target = m.group(1) or m.group(2)
                splices.append((number, self.include(target, m.group(1) is not None,
                                                     directory, file, where, depth)))  # fmt: skip
            elif name == "error":
                raise SliceError(f"#error {rest.strip()}", where)
            else:
                raise SliceError(f"unknown preprocessor directive '#{name}'", where)
        if stack:
            raise SliceError("#if without #endif", Position(file, len(lines), 1))
        tokens = tokenize("\n".join(lines), file)
        if not splices:
            return tokens
        merged: list[Token] = []
        k = 0
        for after_line, included in splices:
            while k < len(tokens) - 1 and tokens[k].position.line <= after_line:
                merged.append(tokens[k])
                k += 1
            merged.extend(included[:-1])  # without its end-of-file token
        merged.extend(tokens[k:])
        return merged

    def include(
        self, target: str, quoted: bool, directory: Path, file: str, where: Position, depth: int
    ) -> list[Token]:
        if depth >= _MAX_DEPTH:
            raise SliceError(f"#include nested more than {_MAX_DEPTH} deep (a cycle?)", where)
        text, path, directory_of = self.resolve(target, quoted, directory, where)
        includes = self.files[file]
        if path not in includes:
            includes.append(path)
        if _key(path) in self.once:
            return _eof(path)
        return self.process(text, path, directory_of, depth + 1)

    def resolve(
        self, target: str, quoted: bool, directory: Path, where: Position
    ) -> tuple[str, str, Path]:
        normalized = target.replace("\\", "/")
        if normalized in BUILTIN_INCLUDES:
            resource = resources.files(__package__).joinpath("builtin", *normalized.split("/"))
            return resource.read_text(encoding="utf-8"), str(resource), Path(str(resource)).parent
        candidates = ([directory] if quoted else []) + self.include_dirs
        for base in candidates:
            path = base / target
            if path.is_file():
                return _read(path, where), str(path), path.parent
        raise SliceError(f"cannot find include file '{target}'", where)

    def evaluate(self, expression: str, where: Position) -> bool:
        return _Condition(expression, self.macros, where).run() != 0


def _eof(path: str) -> list[Token]:
    return tokenize("", path)


def _key(path: str) -> str:
    return os.path.realpath(path) if os.path.exists(path) else path


def _read(path: Path, where: Position) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SliceError(f"cannot read include file '{path}': {e}", where) from None


def _ends_in_comment(line: str, in_comment: bool) -> bool:
    """Whether a /* comment is still open after ``line`` (so a following '#' is not a directive)."""
    i = 0
    while i < len(line):
        if in_comment:
            end = line.find("*/", i)
            if end < 0:
                return True
            in_comment, i = False, end + 2
        elif line.startswith("//", i):
            return False
        elif line.startswith("/*", i):
            in_comment, i = True, i + 2
        elif line[i] == '"':
            end = line.find('"', i + 1)
            i = len(line) if end < 0 else end + 1
        else:
            i += 1
    return in_comment


_COND_TOKEN = re.compile(r"\s*(?:(\d+)[uUlL]*|([A-Za-z_]\w*)|(&&|\|\||==|!=|<=|>=|[()!<>]))")


class _Condition:
    """Evaluates an #if expression: defined, !, &&, ||, comparisons, integers, macros."""

    def __init__(self, text: str, macros: dict[str, str], where: Position) -> None:
        self.macros = macros
        self.where = where
        text = text.split("//")[0]
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text.rstrip()):
            m = _COND_TOKEN.match(text, pos)
            if m is None:
                raise SliceError(f"cannot evaluate #if expression '{text.strip()}'", where)
            self.tokens.append(m.group(1) or m.group(2) or m.group(3))
            pos = m.end()
        self.i = 0

    def run(self) -> int:
        value = self.disjunction()
        if self.i != len(self.tokens):
            raise SliceError("unexpected text at the end of an #if expression", self.where)
        return value

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise SliceError("incomplete #if expression", self.where)
        self.i += 1
        return token

    def disjunction(self) -> int:
        value = self.conjunction()
        while self.peek() == "||":
            self.take()
            right = self.conjunction()
            value = int(bool(value) or bool(right))
        return value

    def conjunction(self) -> int:
        value = self.comparison()
        while self.peek() == "&&":
            self.take()
            right = self.comparison()
            value = int(bool(value) and bool(right))
        return value

    def comparison(self) -> int:
        value = self.unary()
        while self.peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()
            right = self.unary()
            value = int(
                {"==": value == right, "!=": value != right, "<": value < right,
                 ">": value > right, "<=": value <= right, ">=": value >= right}[op]
            )  # fmt: skip
        return value

    def unary(self) -> int:
        token = self.take()
        if token == "!":
            return int(not self.unary())
        if token == "(":
            value = self.disjunction()
            if self.take() != ")":
                raise SliceError("expected ')' in #if expression", self.where)
            return value
        if token == "defined":
            parens = self.peek() == "("
            if parens:
                self.take()
            name = self.take()
            if parens and self.take() != ")":
                raise SliceError("expected ')' after defined(...", self.where)
            return int(name in self.macros)
        if token.isdigit():
            return int(token)
        if token[0].isalpha() or token[0] == "_":
            expansion = self.macros.get(token, "0").strip()
            return int(expansion) if expansion.isdigit() else 0
        raise SliceError(f"unexpected '{token}' in #if expression", self.where)
