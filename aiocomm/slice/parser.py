"""A hand-written recursive-descent parser from tokens to the checked model.

Slice requires a name to be defined before it is used (classes and interfaces
may be forward-declared), so names are resolved while parsing, as Ice's own
compilers do, and every node is built complete and frozen. Rules that need a
finished construct are in ``check``; the symbol table is ``scope``.
"""

from __future__ import annotations

from typing import Literal

from . import check
from .ast import (
    OBJECT_PROXY,
    BuiltinType,
    Class,
    Const,
    ConstValue,
    DataMember,
    Definition,
    Dictionary,
    Enum,
    Enumerator,
    EnumValue,
    Exception,
    Interface,
    Module,
    NamedType,
    Operation,
    Param,
    ProxyType,
    Sequence,
    SourceFile,
    Struct,
    Type,
    Unit,
)
from .errors import Position, SliceError, SliceWarning
from .lexer import Kind, Token
from .preprocess import Preprocessed
from .scope import Scopes, Symbol, article

__all__ = ["parse_tokens"]

_BUILTIN_KEYWORDS = {
    "bool": "bool", "byte": "byte", "short": "short", "int": "int", "long": "long",
    "float": "float", "double": "double", "string": "string", "Value": "Value",
}  # fmt: skip
_RESERVED_SUFFIXES = ("Prx", "Ptr", "Helper", "Holder")
_DEFINITION_KEYWORDS = ("module", "class", "interface", "exception", "struct", "sequence",
                        "dictionary", "enum", "const")  # fmt: skip


def parse_tokens(pre: Preprocessed, main_file: str) -> Unit:
    return _Parser(pre, main_file).run()


class _ModuleParts:
    """A module's openings, merged: filled while parsing, frozen at the end."""

    def __init__(self, symbol: Symbol, metadata: tuple[str, ...], doc: str | None) -> None:
        self.symbol = symbol
        self.metadata = metadata
        self.doc = doc
        self.items: list[Definition | _ModuleParts] = []


class _Parser:
    def __init__(self, pre: Preprocessed, main_file: str) -> None:
        self.tokens = pre.tokens
        self.files = pre.files
        self.main_file = main_file
        self.i = 0
        self.scopes = Scopes()
        self.definitions: dict[str, Definition] = {}
        self.modules: dict[str, _ModuleParts] = {}
        self.top: list[_ModuleParts] = []
        self.warnings: list[SliceWarning] = []
        self.global_metadata: dict[str, list[str]] = {}
        self.files_with_definitions: set[str] = set()
        self.compact_ids: dict[int, str] = {}
        self.forward: dict[str, Symbol] = {}

    # ---- tokens -------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.kind in (Kind.PUNCT, Kind.KEYWORD, Kind.SCOPE) and token.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.next()
            return True
        return False

    def fail_here(self, message: str) -> SliceError:
        """An error about the next token: it is not what ``message`` expects. A
        token on a later line than the previous one means something is missing
        at the end of that line, so the error points there."""
        token = self.peek()
        previous = self.tokens[self.i - 1] if self.i > 0 else None
        if previous is not None and (
            token.kind is Kind.EOF
            or token.position.file != previous.position.file
            or token.position.line > previous.position.line
        ):
            p = previous.position
            return SliceError(message, Position(p.file, p.line, p.column + len(previous.text)))
        return SliceError(f"{message}, found {token.describe()}", token.position)

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            raise self.fail_here(f"expected '{text}' {context}")
        return self.next()

    def identifier(self, what: str) -> Token:
        token = self.peek()
        if token.kind is Kind.KEYWORD:
            raise SliceError(
                f"keyword '{token.text}' cannot be used as {what}; escape it as '\\{token.text}'",
                token.position,
            )
        if token.kind is not Kind.IDENT:
            raise self.fail_here(f"expected {what}")
        self.next()
        return token

    def new_name(self, what: str) -> Token:
        token = self.identifier(what)
        for suffix in _RESERVED_SUFFIXES:
            if token.text.endswith(suffix):
                raise SliceError(
                    f"'{token.text}' is reserved: names ending in '{suffix}' would collide with "
                    "generated names",
                    token.position,
                )
        return token

    def scoped_name(self, what: str) -> tuple[str, Position]:
        start = self.peek().position
        parts = []
        if self.accept("::"):
            parts.append("")
        parts.append(self.identifier(what).text)
        while self.at("::"):
            self.next()
            parts.append(self.identifier(what).text)
        return "::".join(parts), start

    def metadata(self) -> tuple[str, ...]:
        if not self.at("["):
            return ()
        start = self.next().position
        if self.at("["):
            raise SliceError("file metadata [[...]] must appear before any definitions", start)
        directives = [self.metadata_string()]
        while self.accept(","):
            directives.append(self.metadata_string())
        self.expect("]", "to close the metadata")
        self.warnings.extend(check.metadata_warnings(directives, start))
        return tuple(directives)

    def metadata_string(self) -> str:
        token = self.peek()
        if token.kind is not Kind.STRING:
            raise self.fail_here("expected a metadata string")
        self.next()
        assert isinstance(token.value, str)
        return token.value

    def lookup(self, scoped: str) -> Definition | None:
        return self.definitions.get(scoped)

    # ---- file level ----------------------------------------------------------

    def run(self) -> Unit:
        while self.peek().kind is not Kind.EOF:
            token = self.peek()
            file = token.position.file
            if self.at("[") and self.peek(1).text == "[" and self.peek(1).kind is Kind.PUNCT:
                self.file_metadata(file)
                continue
            doc = token.doc
            metadata = self.metadata()
            keyword = self.peek()
            if not (keyword.kind is Kind.KEYWORD and keyword.text == "module"):
                if keyword.kind is Kind.KEYWORD and keyword.text in _DEFINITION_KEYWORDS:
                    raise SliceError(
                        f"{keyword.text} definitions must be inside a module", keyword.position
                    )
                raise self.fail_here("expected a module definition")
            self.files_with_definitions.add(file)
            self.module("", metadata, doc)
        for symbol in self.forward.values():
            if symbol.node is None:
                raise SliceError(
                    f"{symbol.kind} '{symbol.name}' is declared but never defined (aiocomm needs "
                    "the definition of every class and interface it uses)",
                    symbol.position,
                )
        return self.unit()

    def file_metadata(self, file: str) -> None:
        start = self.next().position
        self.next()
        if file in self.files_with_definitions:
            raise SliceError("file metadata [[...]] must appear before any definitions", start)
        directives = [self.metadata_string()]
        while self.accept(","):
            directives.append(self.metadata_string())
        self.expect("]", "to close the file metadata")
        self.expect("]", "to close the file metadata")
        self.warnings.extend(check.metadata_warnings(directives, start, global_=True))
        self.global_metadata.setdefault(file, []).extend(directives)

    def unit(self) -> Unit:
        def build(parts: _ModuleParts) -> Module:
            items = tuple(build(x) if isinstance(x, _ModuleParts) else x for x in parts.items)
            s = parts.symbol
            module = Module(s.name, s.scoped, s.position, items, parts.metadata, parts.doc)
            self.definitions[s.scoped] = module
            return module

        modules = tuple(build(m) for m in self.top)
        files = tuple(
            SourceFile(path, tuple(self.global_metadata.get(path, ())), tuple(includes))
            for path, includes in self.files.items()
        )
        return Unit(self.main_file, files, modules, dict(self.definitions), tuple(self.warnings))

    # ---- definitions ---------------------------------------------------------

    def definition(self, container: str, parent: _ModuleParts) -> None:
        doc = self.peek().doc
        metadata = self.metadata()
        token = self.peek()
        if token.kind is not Kind.KEYWORD or token.text not in (*_DEFINITION_KEYWORDS, "local"):
            raise self.fail_here("expected a definition")
        if token.text == "local":
            raise SliceError("local definitions are not supported: aiocomm maps only what "
                             "travels on the wire", token.position)  # fmt: skip
        if token.text == "module":
            self.module(container, metadata, doc, parent)
            return
        node: Definition | None = getattr(self, "d_" + token.text)(container, metadata, doc)
        if node is not None:
            self.definitions[node.scoped] = node
            parent.items.append(node)

    def end_of_block(self) -> None:
        # Ice 3.7 accepts a block definition without its closing ';'.
        self.accept(";")

    def module(
        self, container: str, metadata: tuple[str, ...], doc: str | None,
        parent: _ModuleParts | None = None,
    ) -> None:  # fmt: skip
        self.expect("module", "")
        names = [self.new_name("a module name")]
        while self.accept("::"):
            names.append(self.new_name("a module name"))
        opened: list[_ModuleParts] = []
        for name in names:
            symbol = self.scopes.declare(container, name.text, "module", name.position)
            parts = self.modules.get(symbol.scoped)
            if parts is None:
                parts = _ModuleParts(symbol, metadata, doc)
                self.modules[symbol.scoped] = parts
                if parent is None:
                    self.top.append(parts)
                else:
                    parent.items.append(parts)
            opened.append(parts)
            parent, container = parts, symbol.scoped
        self.expect("{", f"to open module '{names[-1].text}'")
        while not self.at("}"):
            if self.peek().kind is Kind.EOF:
                raise self.fail_here(f"expected '}}' to close module '{names[-1].text}'")
            self.definition(container, opened[-1])
        self.next()
        self.end_of_block()

    def declare(self, container: str, name: Token, kind: str) -> Symbol:
        symbol = self.scopes.declare(container, name.text, kind, name.position)
        if symbol.node is not None or (symbol.position != name.position and kind not in
                                       ("class", "interface")):  # fmt: skip
            raise SliceError(
                f"redefinition of {kind} '{name.text}' (first defined at {symbol.position})",
                name.position,
            )
        return symbol

    def d_struct(self, container: str, metadata: tuple[str, ...], doc: str | None) -> Struct:
        self.next()
        name = self.new_name("a struct name")
        symbol = self.declare(container, name, "struct")
        self.expect("{", f"to open struct '{name.text}'")
        members = self.members(symbol, "struct", allow_optional=False)
        if not members:
            raise SliceError(f"struct '{name.text}' must have at least one member", name.position)
        self.end_of_block()
        node = Struct(name.text, symbol.scoped, name.position, tuple(members), metadata, doc)
        symbol.node = node
        return node

    def d_class(self, container: str, metadata: tuple[str, ...], doc: str | None) -> Class | None:
        self.next()
        name = self.new_name("a class name")
        if self.accept(";"):
            # A forward declaration, allowed before or after the definition.
            symbol = self.scopes.declare(container, name.text, "class", name.position)
            self.forward.setdefault(symbol.scoped, symbol)
            return None
        symbol = self.declare(container, name, "class")
        compact_id = None
        if self.accept("("):
            compact_id = self.integer_value("compact id", 0, check.MAX_TAG, symbol.scoped)
            self.expect(")", "after the compact id")
            owner = self.compact_ids.setdefault(compact_id, symbol.scoped)
            if owner != symbol.scoped:
                raise SliceError(f"compact id {compact_id} is already used by class {owner}",
                                 name.position)  # fmt: skip
        base = None
        if self.accept("extends"):
            base = self.base(container, "class", name.text)
        if self.at("implements"):
            raise SliceError("classes implementing interfaces are not supported (deprecated "
                             "since Ice 3.7)", self.peek().position)  # fmt: skip
        self.expect("{", f"to open class '{name.text}'")
        members = self.members(symbol, "class", allow_optional=True)
        check.check_class_members(base, members, self.lookup)
        self.end_of_block()
        node = Class(name.text, symbol.scoped, name.position, base, tuple(members), compact_id,
                     metadata, doc)  # fmt: skip
        symbol.node = node
        return node

    def d_exception(self, container: str, metadata: tuple[str, ...], doc: str | None) -> Exception:
        self.next()
        name = self.new_name("an exception name")
        symbol = self.declare(container, name, "exception")
        if self.at(";"):
            raise SliceError("exceptions cannot be forward-declared", self.peek().position)
        base = None
        if self.accept("extends"):
            base = self.base(container, "exception", name.text)
        self.expect("{", f"to open exception '{name.text}'")
        members = self.members(symbol, "exception", allow_optional=True)
        check.check_class_members(base, members, self.lookup)
        self.end_of_block()
        node = Exception(name.text, symbol.scoped, name.position, base, tuple(members),
                         metadata, doc)  # fmt: skip
        symbol.node = node
        return node

    def base(self, container: str, kind: str, name: str) -> str:
        text, position = self.scoped_name(f"a base {kind} name")
        symbol = self.scopes.lookup(container, text, position)
        if symbol.kind != kind:
            raise SliceError(f"{kind} '{name}' cannot extend {symbol.describe()}: it is not "
                             f"{article(kind)} {kind}", position)  # fmt: skip
        if symbol.node is None:
            raise SliceError(f"{kind} '{name}' cannot extend '{text}': it is declared but not "
                             "defined yet", position)  # fmt: skip
        return symbol.scoped

    def members(self, owner: Symbol, kind: str, allow_optional: bool) -> list[DataMember]:
        members: list[DataMember] = []
        seen: dict[str, DataMember] = {}
        while not self.accept("}"):
            if self.peek().kind is Kind.EOF:
                raise self.fail_here(f"expected '}}' to close {kind} '{owner.name}'")
            doc = self.peek().doc
            metadata = self.metadata()
            tag = None
            if self.at("optional"):
                optional = self.next()
                if not allow_optional:
                    raise SliceError(f"optional data members are not allowed in a {kind}",
                                     optional.position)  # fmt: skip
                tag = self.tag(owner.scoped)
            if self.at("void"):
                raise SliceError(f"a {kind} cannot have operations (define an interface)",
                                 self.peek().position)  # fmt: skip
            type_ = self.type(owner.scoped)
            name = self.new_name("a data member name")
            if self.at("("):
                raise SliceError(f"a {kind} cannot have operations (define an interface)",
                                 name.position)  # fmt: skip
            previous = seen.get(name.text.lower())
            if previous is not None:
                raise SliceError(
                    f"data member '{name.text}' is already defined at {previous.position}"
                    if previous.name == name.text else
                    f"data member '{name.text}' differs only in capitalization from "
                    f"'{previous.name}'", name.position)  # fmt: skip
            default = None
            if self.accept("="):
                default = self.value(owner.scoped, type_, f"data member '{name.text}'")
            self.expect(";", f"after data member '{name.text}'")
            member = DataMember(name.text, type_, name.position, tag, default, metadata, doc)
            seen[name.text.lower()] = member
            members.append(member)
        check.check_tags(members)
        return members

    def tag(self, scope: str) -> int:
        self.expect("(", "after 'optional'")
        value = self.integer_value("tag", 0, check.MAX_TAG, scope)
        self.expect(")", "after the tag")
        return value

    def integer_value(self, what: str, low: int, high: int, scope: str) -> int:
        token = self.peek()
        value: object
        if token.kind is Kind.INT:
            self.next()
            value = token.value
        elif token.kind is Kind.IDENT or token.kind is Kind.SCOPE:
            text, position = self.scoped_name(what)
            symbol = self.scopes.lookup(scope, text, position)
            value = symbol.node.value if isinstance(symbol.node, Const) else None
        else:
            raise self.fail_here(f"expected an integer {what}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise SliceError(f"{what} must be an integer", token.position)
        if not low <= value <= high:
            raise SliceError(f"{what} {token.text} is out of range ({low}..{high})",
                             token.position)  # fmt: skip
        return value

    def d_interface(
        self, container: str, metadata: tuple[str, ...], doc: str | None
    ) -> Interface | None:
        self.next()
        name = self.new_name("an interface name")
        if self.accept(";"):
            # A forward declaration, allowed before or after the definition.
            symbol = self.scopes.declare(container, name.text, "interface", name.position)
            self.forward.setdefault(symbol.scoped, symbol)
            return None
        symbol = self.declare(container, name, "interface")
        bases: list[str] = []
        if self.accept("extends"):
            while True:
                base_position = self.peek().position
                base = self.base(container, "interface", name.text)
                if base in bases:
                    raise SliceError(f"interface '{name.text}' names base {base} twice",
                                     base_position)  # fmt: skip
                bases.append(base)
                if not self.accept(","):
                    break
        self.expect("{", f"to open interface '{name.text}'")
        format_ = _format(metadata)
        operations: list[Operation] = []
        while not self.accept("}"):
            if self.peek().kind is Kind.EOF:
                raise self.fail_here(f"expected '}}' to close interface '{name.text}'")
            op = self.operation(symbol, format_)
            for other in operations:
                if other.name.lower() == op.name.lower():
                    raise SliceError(
                        f"operation '{op.name}' is already defined at {other.position}"
                        if other.name == op.name else
                        f"operation '{op.name}' differs only in capitalization from "
                        f"'{other.name}'", op.position)  # fmt: skip
            operations.append(op)
        self.end_of_block()
        base_nodes = [n for n in map(self.lookup, bases) if isinstance(n, Interface)]
        check.check_interface_operations(name.text, base_nodes, operations, self.lookup)
        node = Interface(name.text, symbol.scoped, name.position, tuple(bases),
                         tuple(operations), metadata, doc)  # fmt: skip
        symbol.node = node
        return node

    def operation(self, interface: Symbol, interface_format: str | None) -> Operation:
        doc = self.peek().doc
        metadata = self.metadata()
        idempotent = self.accept("idempotent")
        return_tag = None
        if self.accept("optional"):
            return_tag = self.tag(interface.scoped)
            return_type: Type | None = self.type(interface.scoped)
        else:
            return_type = self.type_or_void(interface.scoped, allow_void=True)
        name = self.new_name("an operation name")
        if name.text.lower() == interface.name.lower():
            # A servant's method named as its class would read as a constructor.
            raise SliceError(f"operation '{name.text}' cannot be named as its interface "
                             f"'{interface.name}'", name.position)  # fmt: skip
        if not self.at("("):
            raise self.fail_here(
                f"expected '(' after operation name '{name.text}' (interfaces have no data members)"
            )
        self.next()
        params: list[Param] = []
        seen: dict[str, Param] = {}
        while not self.at(")"):
            if params:
                self.expect(",", "between parameters")
            params.append(self.param(interface.scoped, params, seen))
        self.next()
        check.check_tags(params, return_tag=return_tag)
        throws: list[str] = []
        if self.accept("throws"):
            while True:
                text, position = self.scoped_name("an exception name")
                symbol = self.scopes.lookup(interface.scoped, text, position)
                if symbol.kind != "exception":
                    raise SliceError(f"'{text}' in the throws clause of '{name.text}' is "
                                     f"{article(symbol.kind)} {symbol.kind}, not an exception",
                                     position)  # fmt: skip
                if symbol.scoped in throws:
                    raise SliceError(f"'{name.text}' throws {symbol.scoped} twice", position)
                throws.append(symbol.scoped)
                if not self.accept(","):
                    break
        self.expect(";", f"after operation '{name.text}'")
        format_ = _format(metadata) or interface_format
        return Operation(name.text, name.position, return_type, tuple(params), return_tag,
                         idempotent, tuple(throws), _as_format(format_), metadata,
                         doc)  # fmt: skip

    def param(self, scope: str, params: list[Param], seen: dict[str, Param]) -> Param:
        metadata = self.metadata()
        out_token = self.peek()
        out = self.accept("out")
        if not out and params and params[-1].out:
            raise SliceError("in parameters cannot follow out parameters", out_token.position)
        tag = self.tag(scope) if self.accept("optional") else None
        type_ = self.type(scope)
        name = self.new_name("a parameter name")
        previous = seen.get(name.text.lower())
        if previous is not None:
            raise SliceError(
                f"parameter '{name.text}' is already defined at {previous.position}"
                if previous.name == name.text else
                f"parameter '{name.text}' differs only in capitalization from "
                f"'{previous.name}'", name.position)  # fmt: skip
        param = Param(name.text, type_, name.position, out, tag, metadata)
        seen[name.text.lower()] = param
        return param

    def d_sequence(self, container: str, metadata: tuple[str, ...], doc: str | None) -> Sequence:
        self.next()
        self.expect("<", "after 'sequence'")
        element_metadata = self.metadata()
        element = self.type(container)
        self.expect(">", "after the element type")
        name = self.new_name("a sequence name")
        symbol = self.declare(container, name, "sequence")
        self.expect(";", f"after sequence '{name.text}'")
        node = Sequence(name.text, symbol.scoped, name.position, element, element_metadata,
                        metadata, doc)  # fmt: skip
        symbol.node = node
        return node

    def d_dictionary(
        self, container: str, metadata: tuple[str, ...], doc: str | None
    ) -> Dictionary:
        self.next()
        self.expect("<", "after 'dictionary'")
        key_metadata = self.metadata()
        key_position = self.peek().position
        key = self.type(container)
        check.check_dictionary_key(key, key_position, self.lookup, self.warnings)
        self.expect(",", "after the key type")
        value_metadata = self.metadata()
        value = self.type(container)
        self.expect(">", "after the value type")
        name = self.new_name("a dictionary name")
        symbol = self.declare(container, name, "dictionary")
        self.expect(";", f"after dictionary '{name.text}'")
        node = Dictionary(name.text, symbol.scoped, name.position, key, value, key_metadata,
                          value_metadata, metadata, doc)  # fmt: skip
        symbol.node = node
        return node

    def d_enum(self, container: str, metadata: tuple[str, ...], doc: str | None) -> Enum:
        self.next()
        name = self.new_name("an enum name")
        symbol = self.declare(container, name, "enum")
        self.expect("{", f"to open enum '{name.text}'")
        enumerators: list[Enumerator] = []
        by_value: dict[int, Enumerator] = {}
        next_value = 0
        while not self.at("}"):
            item = self.new_name("an enumerator name")
            explicit = self.accept("=")
            if explicit:
                value = self.integer_value(f"value of enumerator '{item.text}'", 0,
                                           check.MAX_TAG, container)  # fmt: skip
            else:
                value = next_value
                if value > check.MAX_TAG:
                    raise SliceError(f"value of enumerator '{item.text}' is out of range "
                                     f"(0..{check.MAX_TAG})", item.position)  # fmt: skip
            if value in by_value:
                raise SliceError(f"enumerator '{item.text}' has the same value ({value}) as "
                                 f"'{by_value[value].name}'", item.position)  # fmt: skip
            enumerator = Enumerator(item.text, value, item.position, explicit)
            member = self.scopes.declare(symbol.scoped, item.text, "enumerator", item.position)
            if member.position != item.position:
                raise SliceError(f"enumerator '{item.text}' is already defined at "
                                 f"{member.position}", item.position)  # fmt: skip
            member.enum_value = value
            by_value[value] = enumerator
            enumerators.append(enumerator)
            next_value = value + 1
            if not self.accept(","):
                break
        self.expect("}", f"to close enum '{name.text}'")
        if not enumerators:
            raise SliceError(f"enum '{name.text}' must have at least one enumerator",
                             name.position)  # fmt: skip
        self.end_of_block()
        node = Enum(name.text, symbol.scoped, name.position, tuple(enumerators), metadata, doc)
        symbol.node = node
        return node

    def d_const(self, container: str, metadata: tuple[str, ...], doc: str | None) -> Const:
        self.next()
        metadata = metadata + self.metadata()
        type_position = self.peek().position
        type_ = self.type(container)
        if not (isinstance(type_, BuiltinType) and type_.name != "Value") and not (
            isinstance(type_, NamedType) and type_.kind == "enum"
        ):
            raise SliceError(f"a constant cannot have type {type_}", type_position)
        name = self.new_name("a constant name")
        symbol = self.declare(container, name, "const")
        self.expect("=", f"after constant '{name.text}'")
        literal_start = self.i
        value = self.value(container, type_, f"constant '{name.text}'")
        literal = "".join(t.text for t in self.tokens[literal_start : self.i])
        self.expect(";", f"after constant '{name.text}'")
        node = Const(name.text, symbol.scoped, name.position, type_, value, literal, metadata,
                     doc)  # fmt: skip
        symbol.node = node
        return node

    # ---- types and values ----------------------------------------------------

    def type(self, scope: str) -> Type:
        type_ = self.type_or_void(scope, allow_void=False)
        assert type_ is not None
        return type_

    def type_or_void(self, scope: str, allow_void: bool) -> Type | None:
        token = self.peek()
        if token.kind is Kind.KEYWORD:
            self.next()
            if token.text == "void":
                if allow_void:
                    return None
                raise SliceError("'void' is only a return type", token.position)
            if token.text == "Object":
                return ProxyType(OBJECT_PROXY) if self.accept("*") else BuiltinType("Value")
            if token.text in _BUILTIN_KEYWORDS:
                if self.at("*"):
                    raise SliceError(f"'{token.text}*' is not a type: only interfaces have "
                                     "proxies", self.peek().position)  # fmt: skip
                return BuiltinType(_BUILTIN_KEYWORDS[token.text])  # type: ignore[arg-type]
            if token.text == "LocalObject":
                raise SliceError("LocalObject is not supported: it never travels on the wire",
                                 token.position)  # fmt: skip
            self.i -= 1
            raise self.fail_here("expected a type")
        if token.kind not in (Kind.IDENT, Kind.SCOPE):
            raise self.fail_here("expected a type")
        text, position = self.scoped_name("a type name")
        symbol = self.scopes.lookup(scope, text, position)
        if self.at("*"):
            if symbol.kind != "interface":
                raise SliceError(f"'{text}*' is not a proxy type: {symbol.describe()} is not an "
                                 "interface", position)  # fmt: skip
            self.next()
            return ProxyType(symbol.scoped)
        if symbol.kind == "interface":
            raise SliceError(f"interface '{text}' cannot be passed by value; write '{text}*' "
                             "for a proxy", position)  # fmt: skip
        if symbol.kind == "exception":
            raise SliceError(f"exception '{text}' cannot be used as a type", position)
        if symbol.kind in ("module", "const", "enumerator"):
            raise SliceError(f"'{text}' is {article(symbol.kind)} {symbol.kind}, not a type",
                             position)  # fmt: skip
        if symbol.node is None and symbol.kind == "struct":
            raise SliceError(f"struct '{symbol.name}' cannot contain itself", position)
        return NamedType(symbol.scoped, symbol.kind)  # type: ignore[arg-type]

    def value(self, scope: str, type_: Type, what: str) -> ConstValue:
        token = self.peek()
        value: ConstValue
        if token.kind in (Kind.INT, Kind.FLOAT, Kind.STRING):
            self.next()
            assert token.value is not None
            value, spelled = token.value, token.text
        elif token.kind is Kind.KEYWORD and token.text in ("true", "false"):
            self.next()
            value, spelled = token.text == "true", token.text
        elif token.kind in (Kind.IDENT, Kind.SCOPE):
            text, position = self.scoped_name("a constant or enumerator")
            spelled = text
            value = self.named_value(scope, type_, text, position)
        else:
            raise self.fail_here(f"expected a value for {what}")
        return check.coerce_value(type_, value, spelled, what, token.position, self.lookup)

    def named_value(self, scope: str, type_: Type, text: str, position: Position) -> ConstValue:
        # An enum-typed value may name its enumerator unqualified, as in Ice 3.7.
        if isinstance(type_, NamedType) and type_.kind == "enum" and "::" not in text:
            enum = self.lookup(type_.scoped)
            if isinstance(enum, Enum):
                for e in enum.enumerators:
                    if e.name == text:
                        return EnumValue(enum.scoped, e.name, e.value)
        symbol = self.scopes.lookup(scope, text, position)
        if symbol.kind == "enumerator":
            assert symbol.enum_value is not None
            return EnumValue(symbol.scoped.rsplit("::", 1)[0], symbol.name, symbol.enum_value)
        if isinstance(symbol.node, Const):
            return symbol.node.value
        raise SliceError(f"'{text}' is {article(symbol.kind)} {symbol.kind}, not a constant or "
                         "enumerator", position)  # fmt: skip


def _format(metadata: tuple[str, ...]) -> str | None:
    # Unknown format:* values are ignored (with a warning, like Ice), so they
    # do not override the interface's format.
    for d in metadata:
        if d in ("format:sliced", "format:compact", "format:default"):
            return d.removeprefix("format:")
    return None


def _as_format(value: str | None) -> Literal["sliced", "compact"] | None:
    if value == "sliced":
        return "sliced"
    if value == "compact":
        return "compact"
    return None
