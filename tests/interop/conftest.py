"""Fixtures for the ZeroC Ice 3.7 interoperability tests.

The Ice peers (``ice_peer_server.py``, ``ice_peer_client.py``) run as
subprocesses of the system interpreter with Debian's ``python3-zeroc-ice``
(``/usr/bin/python3``; override with ``AIOCOMM_ICE_PYTHON``). When Ice is not
importable there the tests are skipped, except under ``CI=true`` where a
missing peer fails them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiocomm

HERE = Path(__file__).resolve().parent
ICE_PYTHON = os.environ.get("AIOCOMM_ICE_PYTHON", "/usr/bin/python3")
SERVER_SCRIPT = HERE / "ice_peer_server.py"
CLIENT_SCRIPT = HERE / "ice_peer_client.py"

START_TIMEOUT = 30.0  # seconds for the Ice server to print READY
STOP_TIMEOUT = 10.0  # seconds for it to exit once stdin is closed
CLIENT_TIMEOUT = 50.0  # hard limit for one Ice client scenario (pytest timeout is 60)


@functools.cache
def ice_unavailable_reason() -> str | None:
    """None if ``ICE_PYTHON`` can import Ice, else why not."""
    try:
        result = subprocess.run(
            [ICE_PYTHON, "-c", "import Ice; print(Ice.stringVersion())"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as ex:
        return f"cannot run {ICE_PYTHON} to look for ZeroC Ice: {ex}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return (
            f"ZeroC Ice for Python is not importable by {ICE_PYTHON} "
            f"(apt-get install python3-zeroc-ice): {last}"
        )
    return None


def require_ice() -> None:
    """Skip the test when the Ice peer is missing; fail it under CI=true."""
    reason = ice_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Ice interop peer is missing: {reason}", pytrace=False)
    pytest.skip(reason)


class IcePeerServer:
    """A running ``ice_peer_server.py`` subprocess."""

    def __init__(self, *args: str) -> None:
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [ICE_PYTHON, str(SERVER_SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=START_TIMEOUT).decode("utf-8", "replace").strip()
        except queue.Empty:
            line = ""
        if not line.startswith("READY "):
            self.kill()
            reader.join(STOP_TIMEOUT)
            stderr = self.stderr_text()
            self.close()
            raise RuntimeError(f"Ice peer server did not start: {line!r}\n{stderr}")
        reader.join(STOP_TIMEOUT)
        #: Ice's stringified proxy, e.g. "test -t -e 1.1:tcp -h 127.0.0.1 -p 4242 -t 60000"
        self.proxy: str = line[len("READY ") :]
        #: the endpoint part, e.g. "tcp -h 127.0.0.1 -p 4242 -t 60000"
        self.endpoints: str = self.proxy.split(":", 1)[1]
        words = self.endpoints.split()
        self.port: int = int(words[words.index("-p") + 1])

    def proxy_for(self, identity: str = "test", facet: str | None = None) -> str:
        facet_opt = f" -f {facet}" if facet else ""
        return f"{identity}{facet_opt}:{self.endpoints}"

    def stderr_text(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def stop(self) -> int:
        """Close stdin (the server's signal to exit) and wait; kill if it hangs."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = -9
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Release every pipe and file (after stop() or kill())."""
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass
        self._stderr.close()


@pytest.fixture(scope="session")
def ice_peer() -> None:
    """The Ice peer is usable (else skip, or fail under CI=true)."""
    require_ice()


@pytest.fixture(scope="session")
def ice_server(ice_peer: None) -> Iterator[IcePeerServer]:
    """One Ice 3.7 server for the session (its state: a oneway counter)."""
    server = IcePeerServer()
    try:
        yield server
    finally:
        rc = server.stop()
        stderr = server.stderr_text()
        server.close()
    assert rc == 0, f"Ice peer server exited with {rc}:\n{stderr}"


@pytest.fixture
def ice_server_factory(ice_peer: None) -> Iterator[Callable[..., IcePeerServer]]:
    """Start extra Ice servers (e.g. with ACM options); all stopped at teardown."""
    servers: list[IcePeerServer] = []

    def start(*args: str) -> IcePeerServer:
        server = IcePeerServer(*args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        server.close()


IceClientRunner = Callable[[str, str], Awaitable[dict[str, Any]]]


async def run_ice_client(
    proxy: str, scenario: str, timeout: float = CLIENT_TIMEOUT
) -> dict[str, Any]:
    """Run one ``ice_peer_client.py`` scenario without blocking the event loop.

    Fails the test (with the client's output) unless it reports success.
    """

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ICE_PYTHON, str(CLIENT_SCRIPT), proxy, scenario],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,  # kills the client when exceeded
            check=False,
        )

    try:
        completed = await asyncio.to_thread(run)
    except subprocess.TimeoutExpired as ex:
        pytest.fail(
            f"Ice client scenario {scenario!r} against {proxy!r} timed out after {timeout} s\n"
            f"stdout: {ex.stdout!r}\nstderr: {ex.stderr!r}",
            pytrace=False,
        )
    lines = completed.stdout.strip().splitlines()
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = {}
    if completed.returncode != 0 or not result.get("ok"):
        pytest.fail(
            f"Ice client scenario {scenario!r} against {proxy!r} failed "
            f"(exit {completed.returncode}): {result.get('error')}\n"
            f"stdout: {completed.stdout[-4000:]}\nstderr: {completed.stderr[-4000:]}",
            pytrace=False,
        )
    return result


@pytest.fixture
def ice_client(ice_peer: None) -> IceClientRunner:
    """``await ice_client(proxy_string, scenario)`` -> the client's JSON result."""
    return run_ice_client


@pytest.fixture
async def comm() -> AsyncIterator[aiocomm.Communicator]:
    """An aiocomm communicator on the test's event loop (asyncio or uvloop)."""
    async with aiocomm.Communicator(invocation_timeout=30.0) as communicator:
        yield communicator
