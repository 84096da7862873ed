"""The package's modules depend one way: each imports only modules below it.

The layers, lowest first, as the design has them: errors and values at the
bottom, then the loop-side runtime, the channel (what a proxy needs of its
communicator), proxies, the locator client, adapters, and the communicator
on top. A module that needs something from above is a design error (it is
how the old circle of private attribute reads between communicator, proxy,
adapter and runtime came about), so these tests read the sources' imports
and attribute accesses rather than trusting convention.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import aiocomm

# The package being tested, wherever it is installed (the source tree, or
# the wheel stage's site-packages): its modules ship as source.
PACKAGE = pathlib.Path(aiocomm.__file__).resolve().parent

LAYERS = [
    "errors", "tls", "identity", "_proxy_string", "_encoding", "_fallback",
    "_typed_dispatch", "_runtime", "_channel", "proxy", "_proxy_wire", "_registration",
    "_locator", "adapter", "communicator",
]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports when it runs (imports in
    functions included; those under ``if TYPE_CHECKING:``, for annotations
    only, not)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("aiocomm."):
                found.add(node.module.split(".")[1])

    Visitor().visit(tree)
    return found


def test_every_module_is_placed_in_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYERS)


@pytest.mark.parametrize("module", LAYERS)
def test_a_module_imports_only_modules_below_it(module: str) -> None:
    below = set(LAYERS[:LAYERS.index(module)])
    upward = {name for name in _runtime_imports(module) if name in LAYERS} - below - {module}
    assert not upward, f"{module} imports {sorted(upward)}, which sit above it"


@pytest.mark.parametrize("module", LAYERS[:-1])
def test_no_module_below_the_communicator_reads_its_private_state(module: str) -> None:
    """The communicator's private attributes are its own: what the layers
    below need of it is on the channel (``_channel.Channel``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    reads = [f"line {node.lineno}: {node.value.id}.{node.attr}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr.startswith("_")
             and not node.attr.startswith("__")
             and isinstance(node.value, ast.Name) and node.value.id in ("communicator", "comm")]
    assert not reads, f"{module} reads the communicator's private state: {reads}"
