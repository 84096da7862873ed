"""Lint is a test: the package, tests, examples and bench stay ruff-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    result = subprocess.run(
        [*command, "check", "--no-cache", "aiocomm", "tests", "examples", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    # The package is typed (py.typed, _core.pyi): its users' type checkers
    # read what this checks.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "aiocomm"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
