"""``aiocomm.slice.load``: compiles a Slice file at run time.

The generated source (:mod:`aiocomm.slice.codegen`, the same the command line
writes) is executed into fresh module objects under a private package name
of their own, so loading a file twice gives two independent sets of classes
(the codec's registries then hold the later ones).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import types
from collections.abc import Sequence

from . import codegen
from .ast import Unit
from .frontend import parse_file

__all__ = ["install", "load"]

logger = logging.getLogger("aiocomm.slice")
_loads = itertools.count(1)


def _package(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that its submodules import by name
    sys.modules[name] = module
    return module


def install(unit: Unit, root_name: str) -> types.ModuleType:
    """Executes the generated modules of ``unit`` under package ``root_name``."""
    root = _package(root_name)
    for generated in codegen.generate(unit, import_root=root_name):
        top = _package(f"{root_name}.{generated.name}")
        code = compile(generated.source, f"<slice module {generated.name}>", "exec")
        exec(code, top.__dict__)
        setattr(root, generated.name, top)
        for path, aliases in sorted(generated.nested.items()):
            nested = _package(f"{root_name}.{path}")
            parent_path, _, leaf = path.rpartition(".")
            for public, flat in aliases:
                value = getattr(top, flat)
                setattr(nested, public, value)
            setattr(sys.modules[f"{root_name}.{parent_path}"], leaf, nested)
    if any(m.name == "Ice" for m in unit.modules) and not hasattr(root, "Ice"):
        from . import ice  # the standard definitions: aiocomm's own

        root.__dict__["Ice"] = ice
    return root


def load(path: str | os.PathLike[str], *,
         include_dirs: Sequence[str | os.PathLike[str]] = ()) -> types.ModuleType:
    """Parses the Slice file at ``path`` and returns a module whose attributes are its
    top-level Slice modules (nested modules as their attributes).

    Raises :class:`~aiocomm.slice.SliceError` naming the file, line and column of
    an error. Metadata that means nothing to Python is logged as a warning.
    """
    unit = parse_file(path, include_dirs=include_dirs)
    for warning in unit.warnings:
        logger.warning("%s", warning)
    return install(unit, f"_aiocomm_slice_{next(_loads)}")
