"""The Slice front end and the Python mapping of Slice.

``parse`` and ``parse_file`` return a checked :class:`~aiocomm.slice.ast.Unit`,
or raise :class:`SliceError` naming the file, line and column of the first
error. ``load`` compiles a Slice file into Python modules at run time;
``python -m aiocomm.slice`` writes the same modules as packages.
"""

from __future__ import annotations

from . import ast
from .ast import Unit
from .errors import Position, SliceError, SliceWarning
from .frontend import parse, parse_file
from .loader import load
from .runtime import UnknownSlicedValue

__all__ = ["Position", "SliceError", "SliceWarning", "Unit", "UnknownSlicedValue", "ast", "load",
           "parse", "parse_file"]
