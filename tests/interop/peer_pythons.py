"""Which interpreter runs each Ice peer, and what a test does without one.

- Ice 3.7: Debian's ``python3-zeroc-ice`` under ``/usr/bin/python3``
  (override with ``AIOCOMM_ICE_PYTHON``). Missing: the tests skip, except
  under ``CI=true``, where every stage has it, so they fail.
- Ice 3.8: ``AIOCOMM_ICE38_PYTHON`` or else the first of
  ``build/venv-ice38/bin/python`` and pyenv's ``versions/3.12*/bin/python``
  that imports Ice 3.8. ``bash .ci/ice38-peer.sh`` makes the first: from the
  wheel in ``../shared/wheels/`` when it is there (seconds), else from source
  (10-25 minutes). Missing: the tests skip and say why, except when
  ``AIOCOMM_ICE38_PYTHON`` is set under ``CI=true``: a stage that names the
  peer must have it (CI's py3.12 stage, ``.ci/run``); the other stages leave
  it unset, so there the tests skip.

Imported by the tests (aiocomm's interpreter), never by the peers.
"""

from __future__ import annotations

import functools
import glob
import os
import subprocess
from pathlib import Path

import pytest

ICE_PYTHON = os.environ.get("AIOCOMM_ICE_PYTHON", "/usr/bin/python3")
ICE38_ENV = "AIOCOMM_ICE38_PYTHON"
# What .ci/ice38-peer.sh makes by default, beside the clone's tests.
BUILT_ICE38 = Path(__file__).resolve().parents[2] / "build" / "venv-ice38" / "bin" / "python"
ICE38_CANDIDATES = os.path.join(
    os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions/3.12*/bin/python"
)


def ice_version(python: str) -> tuple[str | None, str]:
    """(Ice version, "") if ``python`` imports Ice, else (None, why not)."""
    try:
        result = subprocess.run(
            [python, "-c", "import Ice; print(Ice.stringVersion())"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as ex:
        return None, f"cannot run it: {ex}"
    if result.returncode != 0:
        return None, (result.stderr.strip().splitlines() or ["?"])[-1]
    return result.stdout.strip(), ""


@functools.cache
def ice_unavailable_reason() -> str | None:
    """None if ``ICE_PYTHON`` can import Ice, else why not."""
    version, why = ice_version(ICE_PYTHON)
    if version is not None:
        return None
    return (
        f"ZeroC Ice for Python is not importable by {ICE_PYTHON} "
        f"(apt-get install python3-zeroc-ice): {why}"
    )


def require_ice() -> str:
    """The Ice 3.7 interpreter; else skip the test, or fail it under CI=true."""
    reason = ice_unavailable_reason()
    if reason is None:
        return ICE_PYTHON
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Ice interop peer is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def find_ice38_python() -> tuple[str | None, str]:
    """(interpreter, "") for the Ice 3.8 peers, or (None, why there is none)."""
    explicit = os.environ.get(ICE38_ENV)
    candidates = [explicit] if explicit else [
        *([str(BUILT_ICE38)] if BUILT_ICE38.exists() else []),
        *sorted(glob.glob(ICE38_CANDIDATES)),
    ]
    tried: list[str] = []
    for python in candidates:
        version, why = ice_version(python)
        if version is not None and version.startswith("3.8"):
            return python, ""
        tried.append(f"{python}: {why or f'Ice {version}, not 3.8'}")
    where = (
        f"{ICE38_ENV}={explicit}"
        if explicit
        else f"{ICE38_ENV} unset, {BUILT_ICE38}, {ICE38_CANDIDATES}"
    )
    return None, (
        f"no Python with ZeroC Ice 3.8 for the Ice 3.8 interop peers ({where}; "
        f"tried: {'; '.join(tried) or 'nothing matched'}). `bash .ci/ice38-peer.sh` makes "
        f"one, build/venv-ice38/bin/python; CI runs these tests in .ci/run's py3.12 stage"
    )


def ice38_python() -> str:
    """The Ice 3.8 interpreter; else fail if CI=true and it is named, or skip."""
    python, reason = find_ice38_python()
    if python is None:
        if os.environ.get("CI") == "true" and os.environ.get(ICE38_ENV):
            pytest.fail(
                f"CI=true and {ICE38_ENV} names the Ice 3.8 interop peer, but it is missing: "
                f"{reason}",
                pytrace=False,
            )
        pytest.skip(reason)
    return python


def peer_python(version: str) -> str:
    """The interpreter of ``version`` ("ice37" or "ice38"), gated as above."""
    return require_ice() if version == "ice37" else ice38_python()
