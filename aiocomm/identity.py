"""Identities, operation modes and the per-dispatch ``Current``."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, NamedTuple

from .tls import TLSInfo

if TYPE_CHECKING:
    from .adapter import ObjectAdapter

__all__ = ["Current", "Identity", "OperationMode"]

# As Ice writes identities: a slash in a name or category, a backslash and a
# double quote are escaped; spaces, colons and at-signs are left for the
# proxy to quote.
_SPECIAL = {"/": "\\/", "\\": "\\\\", '"': '\\"'}


def _escape(text: str) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in text)


def _unescape_split(text: str) -> tuple[str, str]:
    """Splits ``category/name`` at the first unescaped slash and unescapes both parts."""
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            parts[-1].append(text[i + 1])
            i += 2
            continue
        if ch == "/":
            if len(parts) == 2:
                raise ValueError(f"identity {text!r} has more than one unescaped '/'")
            parts.append([])
        else:
            parts[-1].append(ch)
        i += 1
    if len(parts) == 1:
        return "".join(parts[0]), ""
    return "".join(parts[1]), "".join(parts[0])


class Identity(NamedTuple):
    """An Ice object identity: a name and an optional category."""

    name: str
    category: str = ""

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parses ``name`` or ``category/name`` (``\\`` escapes)."""
        name, category = _unescape_split(text)
        if not name:
            raise ValueError(f"identity {text!r} has an empty name")
        return cls(name, category)

    @classmethod
    def of(cls, value: str | Identity | tuple[str, str]) -> Identity:
        if isinstance(value, Identity):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, tuple) and len(value) == 2:
            return cls(str(value[0]), str(value[1]))
        raise TypeError(f"an identity is a str or an Identity, not {type(value).__name__}")

    def __str__(self) -> str:
        if self.category:
            return f"{_escape(self.category)}/{_escape(self.name)}"
        return _escape(self.name)


class OperationMode(enum.IntEnum):
    NORMAL = 0
    NONMUTATING = 1
    IDEMPOTENT = 2


class Current:
    """What a servant knows about the request it is dispatching."""

    __slots__ = (
        "_addresses",
        "_category",
        "_connection_id",
        "_handle",
        "_identity",
        "_name",
        "_released",
        "adapter",
        "context",
        "encoding",
        "facet",
        "mode",
        "operation",
        "request_id",
    )

    def __init__(
        self,
        adapter: ObjectAdapter | None,
        name: str,
        category: str,
        facet: str,
        operation: str,
        mode: OperationMode,
        context: dict[str, str],
        request_id: int,
        encoding: tuple[int, int],
        connection_id: int,
        handle: Any,
    ) -> None:
        # Positional and flat: one of these is made per request.
        self.adapter = adapter
        self._name = name
        self._category = category
        self._identity: Identity | None = None
        self.facet = facet
        self.operation = operation
        self.mode = mode
        self.context = context
        self.request_id = request_id
        self.encoding = encoding
        self._connection_id = connection_id
        self._handle = handle
        self._addresses: tuple[tuple[str, int], tuple[str, int]] | None = None
        self._released = False

    @property
    def identity(self) -> Identity:
        """The identity the request is addressed to."""
        identity = self._identity
        if identity is None:
            identity = self._identity = Identity(self._name, self._category)
        return identity

    def _load_addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        if self._addresses is None and self._handle is not None:
            self._addresses = self._handle.connection_addresses(self._connection_id)
        return self._addresses

    @property
    def local_address(self) -> tuple[str, int] | None:
        """The server side of the connection, ``(host, port)``."""
        addresses = self._load_addresses()
        return addresses[0] if addresses else None

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The client side of the connection, ``(host, port)``."""
        addresses = self._load_addresses()
        return addresses[1] if addresses else None

    @property
    def tls(self) -> TLSInfo | None:
        """The connection's TLS peer and session; None over tcp (or once the
        connection is gone)."""
        if self._handle is None:
            return None
        info = self._handle.connection_tls(self._connection_id)
        return None if info is None else TLSInfo(*info)

    @property
    def is_oneway(self) -> bool:
        return self.request_id == 0

    def __repr__(self) -> str:
        return (
            f"<Current {self.operation!r} on {str(self.identity)!r}"
            f" request_id={self.request_id}>"
        )
