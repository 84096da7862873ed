"""The raw echo peers of either Ice version, as the tests see them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer_process import CLIENT_TIMEOUT, PeerServer, run_peer_client

HERE = Path(__file__).resolve().parent
# The scripts' prefix by version: ice_peer_server.py is Ice 3.7's (the older
# name, which examples/ also runs), ice38_peer_server.py Ice 3.8's.
_PREFIX = {"ice37": "ice", "ice38": "ice38"}


@dataclass(frozen=True)
class EchoPeer:
    """``version`` ("ice37" or "ice38") and the interpreter that has it."""

    version: str
    python: str

    @property
    def name(self) -> str:
        return f"Ice {self.ice_version} peer"

    @property
    def ice_version(self) -> str:
        return "3.7" if self.version == "ice37" else "3.8"

    def start_server(self, *args: str) -> PeerServer:
        """A running ``ice*_peer_server.py`` (options as its --help says)."""
        script = HERE / f"{_PREFIX[self.version]}_peer_server.py"
        return PeerServer(self.name, self.python, script, *args)

    async def run_client(
        self, proxy: str, scenario: str, *options: str, timeout: float = CLIENT_TIMEOUT
    ) -> dict[str, Any]:
        """Run one ``ice*_peer_client.py`` scenario; fails the test unless it succeeds."""
        script = HERE / f"{_PREFIX[self.version]}_peer_client.py"
        command = [self.python, str(script), proxy, scenario, *options]
        result = await run_peer_client(self.name, command, timeout=timeout)
        assert result["ice_version"].startswith(self.ice_version)
        return result
