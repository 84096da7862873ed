"""Turns the text of one Slice file into tokens that know where they start.

Preprocessor directives are not seen here: ``preprocess`` blanks their lines
(keeping the line count) before lexing, so positions stay those of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import Position, SliceError

__all__ = ["KEYWORDS", "Kind", "Token", "tokenize"]

# Slice's keywords (Ice 3.7). They are case-sensitive: `Module` is an identifier.
KEYWORDS = frozenset(
    {
        "bool", "byte", "class", "const", "dictionary", "double", "enum", "exception",
        "extends", "false", "float", "idempotent", "implements", "int", "interface", "local",
        "LocalObject", "long", "module", "Object", "optional", "out", "sequence", "short",
        "string", "struct", "throws", "true", "Value", "void",
    }
)  # fmt: skip

_PUNCT = frozenset("{}()<>,;=*[]")
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", '"': '"', "'": "'", "?": "?",
}  # fmt: skip
_HEX = "0123456789abcdefABCDEF"
_NUMBER_START = "0123456789."


class Kind(Enum):
    IDENT = "identifier"
    KEYWORD = "keyword"
    INT = "integer"
    FLOAT = "floating-point literal"
    STRING = "string literal"
    PUNCT = "punctuation"
    SCOPE = "'::'"
    EOF = "end of file"


@dataclass(frozen=True, slots=True)
class Token:
    """One token. ``text`` is the spelling (without a keyword-escaping ``\\``);
    ``value`` is the decoded literal for INT, FLOAT and STRING tokens;
    ``doc`` is the doc comment (``/** */`` or ``///``) right before it, if any."""

    kind: Kind
    text: str
    position: Position
    value: int | float | str | None = None
    doc: str | None = None

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "end of file"
        return f"'{self.text}'"


def tokenize(text: str, file: str) -> list[Token]:
    """Splits ``text``; raises SliceError at the first character that starts no token."""
    return _Lexer(text, file).run()


class _Lexer:
    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.doc: str | None = None
        self.tokens: list[Token] = []

    def pos(self, at: int | None = None) -> Position:
        at = self.i if at is None else at
        return Position(self.file, self.line, at - self.line_start + 1)

    def fail(self, message: str, at: int | None = None) -> SliceError:
        return SliceError(message, self.pos(at))

    def newline(self, at: int) -> None:
        self.line += 1
        self.line_start = at + 1

    def emit(
        self, kind: Kind, text: str, start: Position, value: int | float | str | None = None
    ) -> None:
        self.tokens.append(Token(kind, text, start, value, self.doc))
        self.doc = None

    def run(self) -> list[Token]:
        text = self.text
        n = len(text)
        while self.i < n:
            c = text[self.i]
            if c == "\n":
                self.newline(self.i)
                self.i += 1
            elif c in " \t\r\f\v":
                self.i += 1
            elif text.startswith("//", self.i):
                end = text.find("\n", self.i)
                end = n if end < 0 else end
                if text.startswith("///", self.i):
                    line = text[self.i + 3 : end].strip()
                    self.doc = line if self.doc is None else f"{self.doc}\n{line}"
                self.i = end
            elif text.startswith("/*", self.i):
                self.block_comment()
            elif c.isalpha() or c == "_" or (c == "\\" and self.i + 1 < n):
                self.identifier()
            elif c.isdigit() or (c == "." and self.i + 1 < n and text[self.i + 1].isdigit()):
                self.number(self.i)
            elif c in "+-" and self.i + 1 < n and text[self.i + 1] in _NUMBER_START:
                self.number(self.i)
            elif c == '"':
                self.string()
            elif text.startswith("::", self.i):
                self.emit(Kind.SCOPE, "::", self.pos())
                self.i += 2
            elif c in _PUNCT:
                self.emit(Kind.PUNCT, c, self.pos())
                self.i += 1
            else:
                raise self.fail(f"unexpected character {c!r}")
        self.tokens.append(Token(Kind.EOF, "", self.pos(), None, None))
        return self.tokens

    def block_comment(self) -> None:
        start = self.pos()
        end = self.text.find("*/", self.i + 2)
        if end < 0:
            raise SliceError("unterminated comment", start)
        body = self.text[self.i + 2 : end]
        is_doc = body.startswith("*") and not body.startswith("*/") and body != "*"
        for k in range(self.i, end):
            if self.text[k] == "\n":
                self.newline(k)
        self.i = end + 2
        if is_doc:
            lines = [ln.strip().lstrip("*").strip() for ln in body[1:].splitlines()]
            self.doc = "\n".join(ln for ln in lines if ln) or None

    def identifier(self) -> None:
        start = self.pos()
        escaped = self.text[self.i] == "\\"
        j = self.i + 1 if escaped else self.i
        k = j
        while k < len(self.text) and (self.text[k].isalnum() or self.text[k] == "_"):
            k += 1
        name = self.text[j:k]
        if not name or not (name[0].isalpha() or name[0] == "_"):
            raise self.fail("expected an identifier after '\\'")
        if not name.isascii():
            raise self.fail(f"identifier '{name}' is not ASCII")
        if name.startswith("_"):
            raise SliceError(f"identifier '{name}' must not begin with an underscore", start)
        self.i = k
        if name in KEYWORDS and not escaped:
            self.emit(Kind.KEYWORD, name, start)
        else:
            self.emit(Kind.IDENT, name, start)

    def number(self, begin: int) -> None:
        text = self.text
        start = self.pos(begin)
        k = begin + 1 if text[begin] in "+-" else begin
        if text.startswith(("0x", "0X"), k):
            d = k + 2
            while d < len(text) and text[d] in _HEX:
                d += 1
            digits = text[k + 2 : d]
            if not digits:
                raise SliceError("hexadecimal literal has no digits", start)
            value = int(digits, 16)
            self.finish_int(begin, d, value, start)
            return
        d = k
        while d < len(text) and text[d].isdigit():
            d += 1
        is_float = False
        if d < len(text) and text[d] == ".":
            is_float = True
            d += 1
            while d < len(text) and text[d].isdigit():
                d += 1
        if d < len(text) and text[d] in "eE":
            e = d + 1
            if e < len(text) and text[e] in "+-":
                e += 1
            if e >= len(text) or not text[e].isdigit():
                raise SliceError("malformed exponent in floating-point literal", start)
            while e < len(text) and text[e].isdigit():
                e += 1
            is_float, d = True, e
        if is_float:
            spelled = text[begin:d]
            if d < len(text) and text[d] in "fF":
                d += 1
            self.check_end(d, start)
            self.i = d
            self.emit(Kind.FLOAT, text[begin:d], start, float(spelled))
            return
        digits = text[k:d]
        if len(digits) > 1 and digits[0] == "0":
            if any(ch in "89" for ch in digits):
                raise SliceError(f"invalid octal literal '{digits}'", start)
            value = int(digits, 8)
        else:
            value = int(digits)
        self.finish_int(begin, d, value, start)

    def finish_int(self, begin: int, end: int, magnitude: int, start: Position) -> None:
        self.check_end(end, start)
        self.i = end
        value = -magnitude if self.text[begin] == "-" else magnitude
        self.emit(Kind.INT, self.text[begin:end], start, value)

    def check_end(self, end: int, start: Position) -> None:
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] == "_"):
            raise SliceError("malformed number", start)

    def string(self) -> None:
        start = self.pos()
        text = self.text
        k = self.i + 1
        out: list[str] = []
        while True:
            if k >= len(text) or text[k] == "\n":
                raise SliceError("unterminated string literal", start)
            c = text[k]
            if c == '"':
                break
            if c != "\\":
                out.append(c)
                k += 1
                continue
            if k + 1 >= len(text):
                raise SliceError("unterminated string literal", start)
            e = text[k + 1]
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
                k += 2
            elif e in "01234567":
                m = k + 1
                while m < len(text) and m < k + 4 and text[m] in "01234567":
                    m += 1
                code = int(text[k + 1 : m], 8)
                if code > 255:
                    raise self.fail("octal escape out of range", k)
                out.append(chr(code))
                k = m
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                m = k + 2
                while m < len(text) and m < k + 2 + width and text[m] in _HEX:
                    m += 1
                digits = text[k + 2 : m]
                if not digits or (e != "x" and len(digits) != width):
                    raise self.fail(f"malformed '\\{e}' escape", k)
                code = int(digits, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise self.fail(f"'\\{e}{digits}' is not a Unicode scalar value", k)
                out.append(chr(code))
                k = m
            else:
                raise self.fail(f"unknown escape sequence '\\{e}'", k)
        begin, self.i = self.i, k + 1
        self.emit(Kind.STRING, text[begin : self.i], start, "".join(out))
