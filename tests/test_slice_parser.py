"""The Slice front end: the model it builds, the errors it reports, and Ice's agreement.

``everything.ice`` is the file the later interop tests reuse; here its model is
asserted piece by piece. Each malformed sample marks with « where the error
must point, and Ice 3.7's slice2py, where installed, must reject the samples
that Slice itself forbids and accept the valid fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from aiocomm.slice import SliceError, parse, parse_file
from aiocomm.slice.ast import (
    OBJECT_PROXY,
    BuiltinType,
    Class,
    Const,
    Dictionary,
    Enum,
    EnumValue,
    Exception,
    Interface,
    Module,
    NamedType,
    ProxyType,
    Sequence,
    Struct,
    Unit,
)

HERE = Path(__file__).resolve().parent
SLICE = HERE / "slice"
EVERYTHING = SLICE / "everything.ice"
INCLUDE = SLICE / "include"
BUILTIN = Path(str(resources.files("aiocomm.slice").joinpath("builtin")))


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_file(EVERYTHING)


def _get(unit: Unit, scoped: str, kind: type) -> object:
    node = unit.lookup(scoped)
    assert isinstance(node, kind), node
    return node


# ---- the model of everything.ice ----------------------------------------------


def test_everything_parses_without_warnings(unit: Unit) -> None:
    assert unit.main_file == str(EVERYTHING)
    assert unit.warnings == ()
    assert [m.name for m in unit.modules] == ["Ice", "Everything"]
    main = unit.files[0]
    assert main.path == str(EVERYTHING)
    assert main.global_metadata == ("python:pkgdir:everything",)
    assert [Path(p).name for p in main.includes] == [
        "Identity.ice", "BuiltinSequences.ice", "Context.ice",
    ]  # fmt: skip
    assert all(Path(p).parent == BUILTIN / "Ice" for p in main.includes)


def test_reopened_module_is_merged_in_source_order(unit: Unit) -> None:
    everything = _get(unit, "::Everything", Module)
    assert isinstance(everything, Module)
    names = [d.name for d in everything.definitions]
    assert names[:3] == ["Color", "ConstBool", "ConstByte"]
    assert names[-2:] == ["Nested", "Reopened"]
    assert everything.position.line == 13
    assert [d.name for d in unit.defined_in(str(EVERYTHING))][:2] == ["Color", "ConstBool"]


def test_enum_explicit_values_count_on(unit: Unit) -> None:
    color = _get(unit, "::Everything::Color", Enum)
    assert isinstance(color, Enum)
    assert [(e.name, e.value, e.explicit) for e in color.enumerators] == [
        ("red", 0, False), ("green", 5, True), ("blue", 6, False),
    ]  # fmt: skip
    assert color.doc == "A colour whose enumerators count on from an explicit value."
    assert (color.position.line, color.position.column) == (16, 10)


@pytest.mark.parametrize(
    ("name", "type_", "value"),
    [
        ("ConstBool", "bool", True),
        ("ConstByte", "byte", 255),
        ("ConstShort", "short", -32768),
        ("ConstInt", "int", 2**31 - 1),
        ("ConstLong", "long", -(2**63)),
        ("ConstFloat", "float", 1.5),
        ("ConstDouble", "double", -2.5e-3),
        ("ConstString", "string", 'tab\there "quoted" \u00e9'),
        ("ConstOctal", "int", 0o17),
        ("ConstRef", "long", 2**31 - 1),
    ],
)
def test_constants(unit: Unit, name: str, type_: str, value: object) -> None:
    const = _get(unit, f"::Everything::{name}", Const)
    assert isinstance(const, Const)
    assert const.type == BuiltinType(type_)  # type: ignore[arg-type]
    assert const.value == value and type(const.value) is type(value)


def test_enum_constant_and_literal_text(unit: Unit) -> None:
    const = _get(unit, "::Everything::ConstColor", Const)
    assert isinstance(const, Const)
    assert const.type == NamedType("::Everything::Color", "enum")
    assert const.value == EnumValue("::Everything::Color", "blue", 6)
    assert const.literal == "Color::blue"
    octal = _get(unit, "::Everything::ConstOctal", Const)
    assert isinstance(octal, Const) and octal.literal == "017"


def test_struct_members_and_defaults(unit: Unit) -> None:
    fields = _get(unit, "::Everything::Fields", Struct)
    assert isinstance(fields, Struct)
    assert fields.doc == "Every built-in type, with Slice defaults."
    got = [(m.name, str(m.type), m.default) for m in fields.members]
    assert got == [
        ("b", "bool", True),
        ("by", "byte", 7),
        ("s", "short", -3),
        ("i", "int", 2**31 - 1),
        ("l", "long", 42),
        ("f", "float", 0.5),
        ("d", "double", 1e10),
        ("str", "string", "default"),
        ("c", "::Everything::Color", EnumValue("::Everything::Color", "green", 5)),
        ("p", "::Everything::Point", None),
        ("id", "::Ice::Identity", None),
    ]
    assert fields.members[0].position.line == 39
    assert fields.members[0].position.column == 14


def test_builtin_identity_is_ours(unit: Unit) -> None:
    identity = _get(unit, "::Ice::Identity", Struct)
    assert isinstance(identity, Struct)
    assert [(m.name, str(m.type)) for m in identity.members] == [
        ("name", "string"), ("category", "string"),
    ]  # fmt: skip
    context = _get(unit, "::Ice::Context", Dictionary)
    assert isinstance(context, Dictionary)
    assert (context.key, context.value) == (BuiltinType("string"), BuiltinType("string"))
    for name, element in [("BoolSeq", "bool"), ("ByteSeq", "byte"), ("ShortSeq", "short"),
                          ("IntSeq", "int"), ("LongSeq", "long"), ("FloatSeq", "float"),
                          ("DoubleSeq", "double"), ("StringSeq", "string"),
                          ("ObjectSeq", "Value")]:  # fmt: skip
        seq = _get(unit, f"::Ice::{name}", Sequence)
        assert isinstance(seq, Sequence) and seq.element == BuiltinType(element)  # type: ignore[arg-type]


def test_sequences_and_dictionaries(unit: Unit) -> None:
    nested = _get(unit, "::Everything::ByteSeqSeq", Sequence)
    assert isinstance(nested, Sequence)
    assert nested.element == NamedType("::Ice::ByteSeq", "sequence")
    key_dict = _get(unit, "::Everything::PointKeyDict", Dictionary)
    assert isinstance(key_dict, Dictionary)
    assert key_dict.key == NamedType("::Everything::Point", "struct")
    assert key_dict.value == BuiltinType("string")


def test_classes_bases_tags_defaults_compact_id(unit: Unit) -> None:
    base = _get(unit, "::Everything::Base", Class)
    node = _get(unit, "::Everything::Node", Class)
    assert isinstance(base, Class) and isinstance(node, Class)
    assert base.base is None and base.compact_id is None
    assert [(m.name, m.tag, m.default) for m in base.members] == [
        ("name", None, "base"), ("count", 1, None),
    ]  # fmt: skip
    assert node.base == "::Everything::Base"
    assert node.compact_id == 17
    assert [(m.name, str(m.type), m.tag) for m in node.members] == [
        ("next", "::Everything::Node", None),
        ("other", "::Everything::Base", None),
        ("label", "string", 2),
        ("where", "::Everything::Point", 3),
        ("color", "::Everything::Color", None),
        ("any", "Value", None),
    ]
    assert node.members[4].default == EnumValue("::Everything::Color", "red", 0)
    assert node.members[2].optional and not node.members[0].optional


def test_exceptions_inherit_with_optional_members(unit: Unit) -> None:
    problem = _get(unit, "::Everything::Problem", Exception)
    detailed = _get(unit, "::Everything::DetailedProblem", Exception)
    unrelated = _get(unit, "::Everything::Unrelated", Exception)
    assert isinstance(problem, Exception) and isinstance(detailed, Exception)
    assert isinstance(unrelated, Exception) and unrelated.members == ()
    assert detailed.base == "::Everything::Problem"
    assert [(m.name, m.tag, m.default) for m in detailed.members] == [
        ("code", None, 1), ("detail", 1, None),
    ]  # fmt: skip


def test_interface_multiple_inheritance_and_operations(unit: Unit) -> None:
    greeter = _get(unit, "::Everything::Greeter", Interface)
    assert isinstance(greeter, Interface)
    assert greeter.bases == ("::Everything::Pinger", "::Everything::Counter")
    ops = {op.name: op for op in greeter.operations}
    assert list(ops)[:3] == ["sayHello", "allTypes", "echoFields"]

    ping = _get(unit, "::Everything::Pinger", Interface)
    assert isinstance(ping, Interface)
    assert ping.operations[0].idempotent and ping.operations[0].return_type is None

    say = ops["sayHello"]
    assert say.return_type == BuiltinType("string") and not say.idempotent
    assert [(p.name, p.out) for p in say.params] == [("name", False)]

    all_types = ops["allTypes"]
    assert len(all_types.in_params) == 8 and len(all_types.out_params) == 8
    assert [str(p.type) for p in all_types.out_params][:3] == ["bool", "byte", "short"]

    opt = ops["opt"]
    assert opt.return_type == BuiltinType("int") and opt.return_tag == 1
    assert [(p.name, p.out, p.tag) for p in opt.params] == [
        ("a", False, 2), ("b", False, 3), ("c", True, 4),
    ]  # fmt: skip

    assert ops["echoClass"].throws == ("::Everything::Problem", "::Everything::Unrelated")
    assert ops["echoClass"].format == "sliced" and ops["echoClass"].metadata == ("format:sliced",)
    assert ops["fail"].throws == ("::Everything::DetailedProblem",)
    assert ops["sayHello"].format is None
    assert ops["self"].return_type == ProxyType("::Everything::Greeter")
    assert ops["any"].return_type == ProxyType(OBJECT_PROXY)
    assert ops["any"].params[0].type == ProxyType(OBJECT_PROXY)
    assert ops["withContext"].params[0].type == NamedType("::Ice::Context", "dictionary")
    assert ops["seqs"].params[0].type == NamedType("::Ice::ByteSeq", "sequence")
    assert ops["twoOuts"].position.line == 112


def test_interface_format_applies_unless_the_operation_says(unit: Unit) -> None:
    graphs = _get(unit, "::Everything::Graphs", Interface)
    assert isinstance(graphs, Interface)
    assert graphs.metadata == ("format:compact",)
    assert [(op.name, op.format) for op in graphs.operations] == [
        ("graph", "compact"), ("slicedGraph", "sliced"),
    ]  # fmt: skip


def test_nested_module_resolves_outwards(unit: Unit) -> None:
    inner = _get(unit, "::Everything::Nested::Inner", Struct)
    assert isinstance(inner, Struct)
    assert inner.members[0].type == NamedType("::Everything::Point", "struct")
    assert inner.members[1].default == EnumValue("::Everything::Color", "blue", 6)
    deep = _get(unit, "::Everything::Nested::Deep", Interface)
    assert isinstance(deep, Interface)
    assert deep.bases == ("::Everything::Greeter",)
    assert deep.operations[0].params[0].type == NamedType("::Everything::Nested::Inner", "struct")


def test_module_a_b_form() -> None:
    unit = parse_file(SLICE / "nested_module.ice")
    outer = unit.modules[0]
    assert outer.name == "Outer" and [d.name for d in outer.definitions] == ["Inner"]
    inner = _get(unit, "::Outer::Inner", Module)
    assert isinstance(inner, Module)
    assert [d.name for d in inner.definitions] == ["Leaf", "LeafSeq"]


# ---- includes and the preprocessor --------------------------------------------


def test_includes_relative_dirs_guards_and_pragma_once() -> None:
    unit = parse_file(INCLUDE / "main.ice", include_dirs=[INCLUDE / "idir"])
    assert [Path(f.path).relative_to(INCLUDE).as_posix() for f in unit.files] == [
        "main.ice", "sub/relative.ice", "sub/sibling.ice", "idir/fromdir.ice", "guarded.ice",
        "once.ice",
    ]  # fmt: skip
    uses = _get(unit, "::Main::Uses", Struct)
    assert isinstance(uses, Struct)
    assert [str(m.type) for m in uses.members] == [
        "::Sub::Rel", "::Sub::Sibling", "::Dir::D", "::Guarded::G", "::Once::O",
    ]  # fmt: skip
    once = _get(unit, "::Once::O", Struct)
    assert isinstance(once, Struct) and once.position.file == str(INCLUDE / "once.ice")
    assert (once.position.line, once.position.column) == (5, 12)


def test_include_not_on_the_path_is_an_error() -> None:
    with pytest.raises(SliceError) as info:
        parse_file(INCLUDE / "main.ice")
    e = info.value
    assert (e.file, e.line, e.column) == (str(INCLUDE / "main.ice"), 2, 1)
    assert "cannot find include file 'fromdir.ice'" in e.message


def test_file_included_twice_without_guard_is_a_redefinition(tmp_path: Path) -> None:
    (tmp_path / "plain.ice").write_text("module P { struct S { int v; }; };\n")
    main = tmp_path / "main.ice"
    main.write_text('#include "plain.ice"\n#include "plain.ice"\n')
    with pytest.raises(SliceError, match="redefinition of struct 'S'") as info:
        parse_file(main)
    assert info.value.file == str(tmp_path / "plain.ice")


def test_builtin_ice_files_are_package_data() -> None:
    root = resources.files("aiocomm.slice").joinpath("builtin", "Ice")
    for name in ("Identity.ice", "BuiltinSequences.ice", "Context.ice"):
        assert "module Ice" in root.joinpath(name).read_text(encoding="utf-8")


def test_ifdef_else_and_define() -> None:
    unit = parse(
        "#define FEATURE\n#ifdef FEATURE\nmodule A { struct S { int v; }; };\n#else\n"
        "module B { struct S { int v; }; };\n#endif\n#if !defined(FEATURE) || 0\n"
        "module C { };\n#elif 1\nmodule D { };\n#endif\n"
    )
    assert [m.name for m in unit.modules] == ["A", "D"]


# ---- lexing details -------------------------------------------------------------


def test_literals_escapes_and_escaped_keywords() -> None:
    unit = parse(
        'module \\module { const string s = "\\x41\\101\\u00e9\\U0001F600\\n";\n'
        "const long h = -0x10; const double e = .5e1; const float z = 1;\n"
        "/* a comment */ struct \\struct { int \\out; }; };"
    )
    assert unit.modules[0].name == "module"
    values = {c.name: c.value for c in unit.modules[0].definitions if isinstance(c, Const)}
    assert values == {"s": "AA\u00e9\U0001f600\n", "h": -16, "e": 5.0, "z": 1.0}
    struct = _get(unit, "::module::struct", Struct)
    assert isinstance(struct, Struct) and struct.members[0].name == "out"


def test_unknown_metadata_is_a_warning_with_a_position() -> None:
    unit = parse('module A {\n  ["cpp:const", "amd"] interface I { void f(); };\n};')
    assert [(str(w.position), w.message) for w in unit.warnings] == [
        ("<string>:2:3", "ignoring metadata 'cpp:const': it means nothing to aiocomm"),
    ]  # fmt: skip
    assert "warning: ignoring metadata 'cpp:const'" in str(unit.warnings[0])
    fast = parse('module A { interface I { ["format:fast"] void f(); }; };')
    assert fast.warnings[0].message.startswith("ignoring metadata 'format:fast'")
    assert fast.modules[0].definitions[0].operations[0].format is None  # type: ignore[union-attr]


def test_sequence_key_is_deprecated_not_an_error() -> None:
    unit = parse("module A { sequence<int> S; dictionary<S, int> D; };")
    assert [w.message for w in unit.warnings] == ["sequences as dictionary keys are deprecated"]


def test_error_str_reads_file_line_column() -> None:
    with pytest.raises(SliceError) as info:
        parse("module M {\n    struct S {\n        int x\n    };\n};", filename="file.ice")
    assert str(info.value) == "file.ice:3:14: expected ';' after data member 'x'"
    assert isinstance(info.value, ValueError)


# ---- malformed inputs ----------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """A malformed sample: « marks where the error must point; ``ice`` says
    whether Slice itself forbids it (so slice2py must reject it too)."""

    id: str
    source: str
    message: str
    ice: bool = True

    def text(self) -> str:
        return self.source.replace("«", "")

    def where(self) -> tuple[int, int]:
        before = self.source[: self.source.index("«")]
        return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


BAD = [
    Bad("missing-semicolon", "module M {\n  struct S {\n    int x«\n  };\n};",
        "expected ';' after data member 'x'"),
    Bad("unknown-type", "module M { struct S { «Foo x; }; };", "'Foo' is not defined"),
    Bad("case-collision", "module M { struct S { int x; }; struct «s { int y; }; };",
        "struct 's' differs only in capitalization from struct 'S' defined at <file>:1:19"),
    Bad("redefinition", "module M {\n struct S { int x; };\n struct «S { int y; };\n};",
        "redefinition of struct 'S' (first defined at <file>:2:9)"),
    Bad("capitalized-use", "module M { struct S { int x; }; struct T { «s y; }; };",
        "'s' is capitalized inconsistently with struct 'S'"),
    Bad("duplicate-tag", "module M { class C { optional(1) int a; optional(1) int «b; }; };",
        "tag 1 of 'b' is already used by 'a'"),
    Bad("duplicate-param-tag",
        "module M { interface I { optional(1) int f(optional(1) int «a); }; };",
        "tag 1 of 'a' is already used by the return value"),
    Bad("negative-tag", "module M { class C { optional(«-1) int a; }; };",
        "tag -1 is out of range (0..2147483647)"),
    Bad("enum-duplicate-value", "module M { enum E { a = 1, «b = 1 }; };",
        "enumerator 'b' has the same value (1) as 'a'"),
    Bad("enum-overflow", "module M { enum E { a = 2147483647, «b }; };",
        "value of enumerator 'b' is out of range"),
    Bad("enum-negative", "module M { enum E { a = «-1 }; };",
        "value of enumerator 'a' -1 is out of range"),
    Bad("const-range", "module M { const byte b = «256; };",
        "value 256 of constant 'b' is out of range for byte (0..255)"),
    Bad("const-float-for-int", "module M { const int x = «1.5; };",
        "constant 'x' has type int, which 1.5 (a floating-point number) is not"),
    Bad("const-float-overflow", "module M { const float x = «1e39; };",
        "value 1e39 of constant 'x' is out of range for float", ice=False),
    Bad("const-wrong-enum", "module M { enum E { a }; enum F { b }; const E k = «F::b; };",
        "constant 'k' has enum type ::M::E, and F::b is not one of its enumerators"),
    Bad("default-type", "module M { struct T { string s = «5; }; };",
        "data member 's' has type string, which 5 (an integer) is not"),
    Bad("default-proxy", "module M { struct S { Object* o = «0; }; };",
        "data member 'o' cannot have a value: its type is ::Ice::Object*"),
    Bad("throws-non-exception",
        "module M { struct S { int x; }; interface I { void f() throws «S; }; };",
        "'S' in the throws clause of 'f' is a struct, not an exception"),
    Bad("throws-twice",
        "module M { exception E {}; interface I { void f() throws E, «E; }; };",
        "'f' throws ::M::E twice"),
    Bad("override",
        "module M { interface I { void f(); }; interface J extends I { void «f(); }; };",
        "operation 'f' redefines operation 'f' of base interface ::M::I"),
    Bad("ambiguous-inheritance",
        "module M { interface I { void f(); }; interface J { void f(); };\n"
        "interface K extends I, J { void «g(); }; };",
        "ambiguous multiple inheritance: 'K' inherits operation 'f' from both ::M::I and ::M::J"),
    Bad("float-key", "module M { dictionary<«float, int> D; };",
        "illegal dictionary key type float: floating-point keys do not compare reliably"),
    Bad("class-key", "module M { class C {}; dictionary<«C, int> D; };",
        "illegal dictionary key type ::M::C: class instances cannot be keys"),
    Bad("in-after-out", "module M { interface I { void f(out int a, «int b); }; };",
        "in parameters cannot follow out parameters"),
    Bad("optional-in-struct", "module M { struct S { «optional(1) int x; }; };",
        "optional data members are not allowed in a struct"),
    Bad("struct-contains-itself", "module M { struct S { «S s; }; };",
        "struct 'S' cannot contain itself"),
    Bad("extends-forward-only",
        "module M { class C; class D extends «C {}; class C extends D {}; };",
        "class 'D' cannot extend 'C': it is declared but not defined yet"),
    Bad("class-extends-interface", "module M { interface I {}; class C extends «I {}; };",
        "class 'C' cannot extend interface 'I': it is not a class"),
    Bad("top-level-struct", "«struct S { int x; };", "struct definitions must be inside a module"),
    Bad("keyword-as-name", "module M { struct S { int «module; }; };",
        "keyword 'module' cannot be used as a data member name; escape it as '\\module'"),
    Bad("reserved-suffix", "module M { struct «FooPrx { int x; }; };",
        "'FooPrx' is reserved: names ending in 'Prx'"),
    Bad("leading-underscore", "module M { struct «_S { int x; }; };",
        "identifier '_S' must not begin with an underscore"),
    Bad("member-hides-base",
        "module M { class C { int x; }; class D extends C { int «x; }; };",
        "data member 'x' redefines data member 'x' of base ::M::C"),
    Bad("exception-as-type", "module M { exception E {}; struct S { «E e; }; };",
        "exception 'E' cannot be used as a type"),
    Bad("interface-by-value", "module M { interface I {}; struct S { «I i; }; };",
        "interface 'I' cannot be passed by value; write 'I*' for a proxy", ice=False),
    Bad("late-file-metadata", 'module M { struct S { int x; }; };\n«[["python:pkgdir:x"]]',
        "file metadata [[...]] must appear before any definitions"),
    Bad("duplicate-compact-id", "module M { class C(3) {}; class «D(3) {}; };",
        "compact id 3 is already used by class ::M::C"),
    Bad("unterminated-string", 'module M { const string s = «"abc;\n};',
        "unterminated string literal"),
    Bad("unterminated-comment", "module M { «/* never closed\n};", "unterminated comment"),
    Bad("missing-include", '«#include "nope.ice"\nmodule M {};',
        "cannot find include file 'nope.ice'"),
    Bad("if-without-endif", "#ifndef X\nmodule M {};\n«", "#if without #endif"),
    Bad("operation-named-as-interface", "module M { interface I { void «i(); }; };",
        "operation 'i' cannot be named as its interface 'I'"),
    Bad("differs-from-module", "module M { const int «m = 1; };",
        "const 'm' differs only in capitalization from its enclosing scope 'M'"),
    Bad("missing-paren", "module M { interface I { void f(int a«; }; };",
        "expected ',' between parameters, found ';'"),
    # Stricter than Ice, on purpose: aiocomm must map what it accepts, and
    # a float constant Ice would round to infinity is a mistake.
    Bad("local", "module M { «local interface L { void f(); }; };",
        "local definitions are not supported", ice=False),
    Bad("class-operations", "module M { class C { «void f(); }; };",
        "a class cannot have operations", ice=False),
    Bad("unknown-escape", 'module M { const string s = "a«\\q"; };',
        "unknown escape sequence '\\q'", ice=False),
    Bad("octal-with-nine", "module M { const int x = «09; };", "invalid octal literal '09'",
        ice=False),
    Bad("forward-never-defined", "module M { interface «I; struct S { I* p; }; };",
        "interface 'I' is declared but never defined", ice=False),
]  # fmt: skip


def test_forward_declaration_before_and_after_the_definition() -> None:
    unit = parse("module M { interface I; interface I { I* f(); }; interface I; class C; };\n"
                 "module M { class C { C next; }; };")  # fmt: skip
    assert isinstance(unit.lookup("::M::I"), Interface)
    assert isinstance(unit.lookup("::M::C"), Class)


def test_error_samples_are_distinct() -> None:
    assert len({b.id for b in BAD}) == len(BAD) >= 15
    assert len({b.message for b in BAD}) == len(BAD)


@pytest.mark.parametrize("bad", BAD, ids=lambda b: b.id)
def test_malformed_input_is_an_error_at_its_position(bad: Bad, tmp_path: Path) -> None:
    path = tmp_path / "bad.ice"
    path.write_text(bad.text())
    with pytest.raises(SliceError) as info:
        parse_file(path)
    e = info.value
    line, column = bad.where() if "«" in bad.source else (1, 1)
    assert (e.file, e.line, e.column) == (str(path), line, column), str(e)
    assert bad.message.replace("<file>", str(path)) in e.message
    assert str(e).startswith(f"{path}:{line}:{column}: ")


# ---- the oracle: Ice 3.7's slice2py ----------------------------------------------


def _slice2py() -> str:
    found = shutil.which("slice2py")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("slice2py is missing under CI=true (.ci/deps.sh installs it)")
        pytest.skip("slice2py is not installed (apt-get install zeroc-ice-compilers)")
    return found


def _ice_accepts(path: Path, tmp_path: Path, *include_dirs: Path) -> tuple[bool, str]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    result = subprocess.run(
        [_slice2py(), *(f"-I{d}" for d in include_dirs), "--output-dir", str(out), str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "include_dirs"),
    [("everything.ice", ()), ("include/main.ice", (INCLUDE / "idir",))],
)
def test_slice2py_accepts_what_we_accept(
    name: str, include_dirs: tuple[Path, ...], tmp_path: Path
) -> None:
    path = SLICE / name
    parse_file(path, include_dirs=include_dirs)
    # Ice compiles against our builtin Ice/*.ice too: they must be valid Slice.
    accepted, stderr = _ice_accepts(path, tmp_path, BUILTIN, *include_dirs)
    assert accepted, stderr


@pytest.mark.parametrize("bad", [b for b in BAD if b.ice], ids=lambda b: b.id)
def test_slice2py_rejects_what_slice_forbids(bad: Bad, tmp_path: Path) -> None:
    path = tmp_path / "bad.ice"
    path.write_text(bad.text())
    with pytest.raises(SliceError):
        parse_file(path)
    accepted, _ = _ice_accepts(path, tmp_path)
    assert not accepted, f"slice2py accepts {bad.id}: {bad.text()!r}"


@pytest.mark.parametrize("bad", [b for b in BAD if not b.ice], ids=lambda b: b.id)
def test_where_we_are_stricter_than_ice_it_is_on_purpose(bad: Bad, tmp_path: Path) -> None:
    # These are valid Slice (Ice accepts them) that aiocomm refuses: if Ice
    # started rejecting one, it would belong with the samples above.
    path = tmp_path / "strict.ice"
    path.write_text(bad.text())
    accepted, stderr = _ice_accepts(path, tmp_path)
    assert accepted, stderr
