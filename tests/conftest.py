"""Suite-wide fixtures: every async test runs on the default loop and on uvloop.

pytest-asyncio's loop-factory hook parametrizes each async test; test ids get
``[asyncio]`` or ``[uvloop]``. Any exception a loop reports to its exception
handler fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from _transport import Transport

import aiocomm

REPO = Path(__file__).resolve().parent.parent


# What the loops' exception handlers saw during the current test.
_loop_errors: list[dict[str, Any]] = []


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    _loop_errors.append(context)
    loop.default_exception_handler(context)


def _with_handler(
    factory: Callable[[], asyncio.AbstractEventLoop],
) -> Callable[[], asyncio.AbstractEventLoop]:
    def make() -> asyncio.AbstractEventLoop:
        loop = factory()
        loop.set_exception_handler(_report)
        return loop

    return make


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return {
        "asyncio": _with_handler(asyncio.new_event_loop),
        "uvloop": _with_handler(uvloop.new_event_loop),
    }


@pytest.fixture(autouse=True)
def _fail_on_loop_errors() -> Any:
    _loop_errors.clear()
    yield
    gc.collect()
    if _loop_errors:
        messages = [f"{e.get('message')}: {e.get('exception')!r}" for e in _loop_errors]
        _loop_errors.clear()
        pytest.fail("the event loop reported unhandled errors: " + "; ".join(messages))


@pytest.fixture
async def comm() -> AsyncIterator[aiocomm.Communicator]:
    """A communicator destroyed at teardown."""
    communicator = aiocomm.Communicator()
    try:
        yield communicator
    finally:
        await communicator.destroy()


@pytest.fixture
def run_script(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs Python code in a fresh interpreter with a hard timeout.

    A scenario that can hang runs here: the test fails, rather than hangs,
    when it does. Raises subprocess.TimeoutExpired on a hang (the child is
    killed).
    """

    def run(code: str, *, timeout: float = 30.0, env: dict[str, str] | None = None,
            args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        script = tmp_path / "scenario.py"
        script.write_text(textwrap.dedent(code))
        full_env = dict(os.environ)
        full_env.pop("PYTHONWARNINGS", None)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-X", "faulthandler", str(script), *args],
            cwd=tmp_path,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of tests/make_test_certs.sh (a CA, server, client, expired, another
    CA's), made once per session in a temporary directory.

    Skips where aiocomm was built without OpenSSL, but never under CI=true, where a
    TLS test then fails with the TLSError that says what is missing.
    """
    if not aiocomm._core.TLS_AVAILABLE and os.environ.get("CI") != "true":
        pytest.skip("aiocomm built without OpenSSL (install libssl-dev and rebuild)")
    directory = tmp_path_factory.mktemp("pki")
    subprocess.run(["sh", str(Path(__file__).resolve().parent / "make_test_certs.sh"),
                    str(directory)], check=True, capture_output=True, timeout=60)
    return directory


@pytest.fixture(params=["tcp", "ssl"])
def transport(request: pytest.FixtureRequest) -> Transport:
    """Runs a test over tcp, then over ssl (server-only authentication)."""
    if request.param == "tcp":
        return Transport("tcp")
    return Transport.ssl(request.getfixturevalue("pki"))
