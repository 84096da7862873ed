"""Reading Slice: the preprocessor, the parser and the checks, as one call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .ast import Unit
from .errors import Position, SliceError
from .parser import parse_tokens
from .preprocess import preprocess

__all__ = ["IncludeDirs", "parse", "parse_file"]

IncludeDirs = Sequence[str | os.PathLike[str]]


def parse(text: str, *, filename: str = "<string>", include_dirs: IncludeDirs = ()) -> Unit:
    """Parses and checks Slice source ``text``; relative includes resolve against the
    directory of ``filename`` (the current directory for ``"<string>"``)."""
    return parse_tokens(preprocess(text, filename, include_dirs), filename)


def parse_file(path: str | os.PathLike[str], *, include_dirs: IncludeDirs = ()) -> Unit:
    """Reads, parses and checks the Slice file at ``path`` and everything it includes."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SliceError(f"cannot read Slice file: {e}", Position(name, 1, 1)) from None
    return parse(text, filename=name, include_dirs=include_dirs)
