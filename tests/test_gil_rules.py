"""The binding's GIL rules (cpp/binding/gil.h), checked.

Every GIL take, re-take or release in the C++ sources goes through gil.h:
there, a take by a native thread is counted (``native_gil_acquisitions``),
and a re-take during finalization is safe. A call written anywhere else
would bypass both, so this test greps for them.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from aiocomm import _core
from aiocomm._core import _testing

REPO = Path(__file__).resolve().parent.parent
GIL_H = REPO / "cpp" / "binding" / "gil.h"

# Takes the GIL: PyGILState_Ensure, gil_scoped_acquire, PyEval_RestoreThread,
# PyEval_AcquireThread. Releases it and re-takes it at the end of a scope:
# gil_scoped_release (its re-take sits in a noexcept destructor, which
# aborts the process when CPython ends a daemon thread there at exit),
# PyEval_SaveThread, Py_BEGIN/END_ALLOW_THREADS.
GIL_CALLS = re.compile(
    r"\b(PyGILState_Ensure|gil_scoped_acquire|gil_scoped_release|PyEval_RestoreThread"
    r"|PyEval_AcquireThread|PyEval_SaveThread|Py_BEGIN_ALLOW_THREADS|Py_END_ALLOW_THREADS)\b")


def gil_calls_outside_gil_h(root: Path) -> list[str]:
    """Every line under ``root`` (C/C++ sources) that names a GIL call, except in gil.h."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in {".h", ".hpp", ".c", ".cc", ".cpp"} or path == GIL_H:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if GIL_CALLS.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_gil_is_taken_only_through_gil_h() -> None:
    assert gil_calls_outside_gil_h(REPO / "cpp") == []


def test_the_grep_sees_a_gil_take(tmp_path: Path) -> None:
    # The check above can fail: a take hidden in an ordinary binding file is found.
    (tmp_path / "binding").mkdir()
    (tmp_path / "binding" / "sneaky.cpp").write_text(
        "void f() {\n  auto s = PyGILState_Ensure();\n}\n"
        "void g() { py::gil_scoped_acquire acquire; }\n")
    assert gil_calls_outside_gil_h(tmp_path) == [
        "binding/sneaky.cpp:2: auto s = PyGILState_Ensure();",
        "binding/sneaky.cpp:4: void g() { py::gil_scoped_acquire acquire; }",
    ]
    # And gil.h itself does contain the one counted take.
    assert "PyGILState_Ensure" in GIL_H.read_text()


def test_a_native_thread_gil_take_is_counted() -> None:
    # The counter is live: a native thread (not started by Python) that takes
    # the GIL through gil.h's function moves it by exactly one.
    seen: list[int] = []
    before = _core.native_gil_acquisitions()
    assert _testing.take_gil_on_native_thread(lambda: seen.append(threading.get_ident()))
    assert _core.native_gil_acquisitions() == before + 1
    assert len(seen) == 1 and seen[0] != threading.get_ident()
