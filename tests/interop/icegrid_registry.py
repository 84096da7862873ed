"""A real IceGrid registry for the tests: Debian's ``zeroc-icegrid`` (Ice 3.7).

:class:`Registry` starts ``icegridregistry`` on loopback, on a free port, with
its LMDB database in a temporary directory, dynamic registration on and no
permission checks; it waits until the client endpoint accepts connections and
kills the process (and anything it left) when stopped. ``icegridadmin`` runs
against it for what only the admin interface does (well-known objects,
application descriptors).

Where the binaries are missing the tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REGISTRY = os.environ.get("AIOCOMM_ICEGRIDREGISTRY", "icegridregistry")
ADMIN = os.environ.get("AIOCOMM_ICEGRIDADMIN", "icegridadmin")
START_TIMEOUT = 30.0  # seconds for the registry to accept connections
ADMIN_TIMEOUT = 30.0  # seconds for one icegridadmin command


def require_icegrid() -> None:
    """Skip without icegridregistry/icegridadmin; fail instead under CI=true."""
    missing = [name for name in (REGISTRY, ADMIN) if shutil.which(name) is None]
    if not missing:
        return
    reason = (f"{' and '.join(missing)} not found (apt-get install zeroc-icegrid "
              "zeroc-ice-utils)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and IceGrid is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    """One ``icegridregistry`` process; ``start()`` again after ``kill()`` reuses
    its port and database (a restarted registry)."""

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        self._tmp = None if directory is not None else tempfile.TemporaryDirectory(
            prefix="aiocomm-icegrid-")
        self.directory = directory if directory is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (self.directory / "db").mkdir(exist_ok=True)
        self.config = self.directory / "registry.cfg"
        self.config.write_text("\n".join([
            "IceGrid.InstanceName=IceGrid",
            f"IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p {self.port}",
            "IceGrid.Registry.Server.Endpoints=tcp -h 127.0.0.1",
            "IceGrid.Registry.Internal.Endpoints=tcp -h 127.0.0.1",
            f"IceGrid.Registry.LMDB.Path={self.directory / 'db'}",
            "IceGrid.Registry.LMDB.MapSize=16",
            "IceGrid.Registry.DynamicRegistration=1",
            "IceGrid.Registry.PermissionsVerifier=IceGrid/NullPermissionsVerifier",
            "IceGrid.Registry.AdminPermissionsVerifier=IceGrid/NullPermissionsVerifier",
            "",
        ]))
        self.log = self.directory / "registry.log"

    @property
    def locator(self) -> str:
        return f"IceGrid/Locator:tcp -h 127.0.0.1 -p {self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([REGISTRY, f"--Ice.Config={self.config}"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"icegridregistry exited with {self.proc.returncode}:\n"
                                   + self.log.read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"icegridregistry did not listen within {START_TIMEOUT:g} s:\n"
                           + self.log.read_text(errors="replace"))

    def kill(self) -> None:
        """SIGKILL, as a crash; waits until it is gone."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def admin(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs one icegridadmin command (blocking: call it in a thread from a loop)."""
        result = subprocess.run(
            [ADMIN, f"--Ice.Default.Locator={self.locator}", "-u", "test", "-p", "test",
             "-e", command],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=ADMIN_TIMEOUT,
            check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"icegridadmin -e {command!r} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result
