"""The README's main job stays true: examples/demo.py runs a hello server and
client in two processes and both sides report what they did, on each loop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("flags", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_demo_runs_server_and_client(flags: list[str]) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), *flags],
                          capture_output=True, text=True, timeout=50, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "demo: server is up at hello" in output
    assert "client: sayHello -> Hello, aiocomm!" in output
    assert "server: sayHello('aiocomm')" in output
    assert "6400 typed echoes" in output
    assert "server: bye" in output


def test_readme_hello_runs_as_written(tmp_path: Path) -> None:
    """The README's opening Slice file and program, run as a user would paste them."""
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    slice_text = re.search(r"```slice\n(.*?)```", readme, re.S)
    program = re.search(r"```python\n(.*?)```", readme, re.S)
    assert slice_text is not None and program is not None
    (tmp_path / "hello.ice").write_text(slice_text.group(1), encoding="utf-8")
    (tmp_path / "hello.py").write_text(program.group(1), encoding="utf-8")
    done = subprocess.run([sys.executable, "hello.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["Hello, world!", "say who you are"]
