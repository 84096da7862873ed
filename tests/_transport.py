"""The transport a test runs over (the ``transport`` fixture of conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiocomm


@dataclass(frozen=True)
class Transport:
    """An endpoint transport and the TLS configurations its two ends need."""

    name: str  # "tcp" or "ssl"
    server_tls: aiocomm.TLS | None = None
    client_tls: aiocomm.TLS | None = None

    @classmethod
    def ssl(cls, pki: Path) -> Transport:
        """Server-only authentication with the certificates of make_test_certs.sh."""
        return cls("ssl",
                   aiocomm.TLS(certfile=pki / "server.pem", keyfile=pki / "server.key",
                               cafile=pki / "ca.pem", verify_peer=0),
                   aiocomm.TLS(cafile=pki / "ca.pem"))

    def endpoint(self) -> str:
        return f"{self.name} -h 127.0.0.1 -p 0"
