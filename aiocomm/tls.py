"""TLS configuration for ``ssl`` endpoints (see :class:`TLS`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import _core
from .errors import TLSError

__all__ = ["TLS", "TLSInfo", "require_tls"]

_VERSIONS = ("TLSv1.2", "TLSv1.3")


@dataclass(frozen=True)
class TLS:
    """Certificates and verification rules of a communicator's ``ssl`` endpoints.

    The names are those of Python's :mod:`ssl` module. ``verify_peer`` takes
    IceSSL's ``VerifyPeer`` levels: 0 verifies nothing; from 1 a client
    verifies the server's chain (and, with ``check_hostname``, its name or
    address) and a server asks for a client certificate; at 2 a server
    requires one. ``cafile`` ``None`` trusts the system's authorities.
    """

    certfile: str | os.PathLike[str] | None = None
    keyfile: str | os.PathLike[str] | None = None
    cafile: str | os.PathLike[str] | None = None
    password: str | None = None
    verify_peer: int = 2
    check_hostname: bool = True
    min_version: str = "TLSv1.2"

    def __post_init__(self) -> None:
        if self.verify_peer not in (0, 1, 2) or isinstance(self.verify_peer, bool):
            raise ValueError(f"verify_peer must be 0, 1 or 2, not {self.verify_peer!r}")
        if not isinstance(self.check_hostname, bool):
            raise TypeError("check_hostname must be a bool")
        if self.min_version not in _VERSIONS:
            raise ValueError(f"min_version must be one of {_VERSIONS}, not {self.min_version!r}")
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile given without certfile")

    def _apply(self, handle: _core.Communicator) -> None:
        """Loads the files into the native core (raises ValueError naming the file)."""
        require_tls()
        try:
            handle.set_tls(_path(self.certfile), _path(self.keyfile), _path(self.cafile),
                           self.password or "", self.verify_peer, self.check_hostname,
                           self.min_version)
        except _core.TLSConfigError as e:
            raise ValueError(f"invalid TLS configuration: {e}") from None


@dataclass(frozen=True)
class TLSInfo:
    """The TLS side of a request's connection (``Current.tls``): the peer's
    certificate, if it sent one, and the session's parameters."""

    subject: str  # RFC 2253, "" without a certificate
    issuer: str
    subject_alt_names: tuple[str, ...]  # "DNS:name", "IP:address", "email:...", "URI:..."
    der: bytes  # the peer's certificate, b"" without one
    cipher: str
    protocol: str  # "TLSv1.2" or "TLSv1.3"


def _path(value: str | os.PathLike[str] | None) -> str:
    return "" if value is None else os.fspath(value)


def require_tls() -> None:
    """Raises :class:`TLSError` when this build of aiocomm has no TLS engine."""
    if not _core.TLS_AVAILABLE:
        raise TLSError("aiocomm was built without OpenSSL (install libssl-dev and rebuild): "
                       "ssl endpoints are unavailable")
