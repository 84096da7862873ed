"""An Ice peer as a subprocess of the tests: a server to start and stop, or a
client scenario to run, under either Ice version's interpreter.

A peer server prints ``READY <proxy>`` as its first stdout line and exits when
its stdin closes (``peer_serve.py``); a peer client prints one JSON line and
exits 0 on success (``echo_scenarios.py``, ``typed_peer.py``).
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

STOP_TIMEOUT = 10.0  # seconds for a server to exit once stdin is closed
CLIENT_TIMEOUT = 50.0  # hard limit for one Ice client scenario (pytest timeout is 60)


class PeerServer:
    """A running Ice peer server subprocess."""

    def __init__(
        self, name: str, python: str, script: Path, *args: str, start_timeout: float = 30.0
    ) -> None:
        self.name = name
        #: set by kill(): the exit status is then no failure
        self.killed = False
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [python, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        # A thread, so a server that never prints cannot hang the test.
        reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=start_timeout).decode("utf-8", "replace").strip()
        except queue.Empty:
            line = ""
        if not line.startswith("READY "):
            self.kill()
            reader.join(STOP_TIMEOUT)
            stderr = self.stderr_text()
            self.close()
            raise RuntimeError(f"{name} server did not start: {line!r}\n{stderr}")
        reader.join(STOP_TIMEOUT)
        #: Ice's stringified proxy: "test -t -e 1.1:tcp -h 127.0.0.1 -p 4242 -t 60000"
        #: from Ice 3.7, "test:tcp -h 127.0.0.1 -p 4242" from Ice 3.8
        self.proxy: str = line[len("READY ") :]
        #: the endpoint part, e.g. "tcp -h 127.0.0.1 -p 4242"
        self.endpoints: str = self.proxy.split(":", 1)[1]

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
        self.killed = True
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

    def stop_and_check(self) -> str | None:
        """stop() and close(); why it failed, or None (a kill() is no failure)."""
        rc = self.stop()
        stderr = self.stderr_text()
        self.close()
        if rc != 0 and not self.killed:
            return f"{self.name} server exited with {rc}:\n{stderr}"
        return None


async def run_peer_client(
    name: str, command: list[str], *, require_ok: bool = True, timeout: float = CLIENT_TIMEOUT
) -> dict[str, Any]:
    """Run one Ice client ``command`` without blocking the event loop.

    Fails the test (with the client's output) unless its last stdout line is
    JSON with ``"ok": true`` and it exits 0; with ``require_ok=False``, unless
    that JSON has ``"checks"`` (a report, passing or not, for the test to read).
    """

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,  # kills the client when exceeded
            check=False,
        )

    what = f"{name} client {command[2:]}"
    try:
        completed = await asyncio.to_thread(run)
    except subprocess.TimeoutExpired as ex:
        pytest.fail(
            f"{what} timed out after {timeout} s\nstdout: {ex.stdout!r}\nstderr: {ex.stderr!r}",
            pytrace=False,
        )
    lines = completed.stdout.strip().splitlines()
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except ValueError:
            result = {}
    if require_ok:
        failed = completed.returncode != 0 or not result.get("ok")
    else:
        failed = "checks" not in result
    if failed:
        pytest.fail(
            f"{what} failed (exit {completed.returncode}): {result.get('error')}\n"
            f"stdout: {completed.stdout[-4000:]}\nstderr: {completed.stderr[-4000:]}",
            pytrace=False,
        )
    return result
