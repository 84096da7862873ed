"""The exceptions aiocomm raises.

Every class derives from :class:`AiocommError`, and, where a builtin means
the same thing, from that builtin too, so ``except TimeoutError`` or
``except ConnectionError`` work as they would with asyncio streams.
"""

from __future__ import annotations

import builtins

__all__ = [
    "AdapterAlreadyActiveError",
    "AdapterDeactivatedError",
    "AdapterNotFoundError",
    "AiocommError",
    "AlreadyRegisteredError",
    "CommunicatorDestroyedError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "ConnectionRefusedError",
    "DispatchError",
    "FacetNotExistError",
    "InvalidReplicaGroupError",
    "InvocationTimeoutError",
    "LocatorTimeoutError",
    "LocatorUnreachableError",
    "MarshalError",
    "MessageSizeError",
    "NotRegisteredError",
    "ObjectNotExistError",
    "OperationNotExistError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProxyParseError",
    "RegistrationError",
    "TLSError",
    "UnknownError",
    "UnknownLocalError",
    "UnknownUserError",
    "UserError",
    "WrongLoopError",
]


class AiocommError(Exception):
    """Base class of every aiocomm error."""


class CommunicatorDestroyedError(AiocommError, RuntimeError):
    """The communicator has been destroyed (or collected): it does no more work."""


class WrongLoopError(AiocommError, RuntimeError):
    """The communicator was used from an event loop other than its own."""


class ProxyParseError(AiocommError, ValueError):
    """A stringified proxy or endpoint could not be parsed."""


class AlreadyRegisteredError(AiocommError, KeyError):
    """A servant is already registered under this identity."""


class NotRegisteredError(AiocommError, KeyError):
    """No servant is registered under this identity; or the locator knows no
    adapter (or well-known object) by the id an indirect proxy names."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a message reads better as it is.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class AdapterDeactivatedError(AiocommError, RuntimeError):
    """The object adapter has been deactivated."""


class ProtocolError(AiocommError):
    """A peer sent something that is not valid Ice protocol."""


class MessageSizeError(ProtocolError, ValueError):
    """A request would exceed ``message_size_max``; it was not sent."""


class MarshalError(ProtocolError, ValueError):
    """Encoded data (parameters, a result, an exception) is malformed or truncated."""


class InvocationTimeoutError(AiocommError, builtins.TimeoutError):
    """No reply arrived within the invocation timeout."""


class ConnectTimeoutError(InvocationTimeoutError):
    """The connection could not be established within the connect timeout."""


class ConnectionRefusedError(AiocommError, builtins.ConnectionRefusedError):
    """No server accepted the connection at any of the proxy's endpoints."""


class ConnectionLostError(AiocommError, builtins.ConnectionError):
    """The connection ended before the reply arrived."""


class LocatorUnreachableError(AiocommError, builtins.ConnectionError):
    """The locator that resolves an indirect proxy could not be reached (or its
    connection failed): nothing was resolved, the request was not sent."""


class LocatorTimeoutError(LocatorUnreachableError, InvocationTimeoutError):
    """The locator did not answer within the invocation timeout (a
    :class:`LocatorUnreachableError` and an :class:`InvocationTimeoutError`)."""


class RegistrationError(AiocommError):
    """The locator registry refused to register an adapter's endpoints (what
    ``await adapter.activate()`` raises); ``__cause__`` holds the registry's
    own exception when it sent one."""


class AdapterNotFoundError(RegistrationError, NotRegisteredError):
    """The registry knows no adapter by this id and does not register new ones
    (dynamic registration is off, or the id belongs to a deployed server)."""


class AdapterAlreadyActiveError(RegistrationError):
    """Another live process has registered the adapter id already."""


class InvalidReplicaGroupError(RegistrationError):
    """The adapter may not join this replica group (a group declared in an
    application descriptor takes only the adapters deployed into it)."""


class TLSError(AiocommError, builtins.ConnectionError):
    """A TLS handshake or record failed (the message carries OpenSSL's reason), or
    TLS is unavailable in this build."""


class UserError(AiocommError):
    """An application error that travels to the caller (reply status 1).

    ``payload`` is the encoded exception (the encapsulation's content).
    Exceptions generated from Slice subclass it; the codec builds those
    without calling ``__init__``, hence the class-level default.
    """

    payload: bytes = b""

    def __init__(self, payload: bytes = b"", message: str | None = None) -> None:
        self.payload = bytes(payload)
        super().__init__(message or f"user exception ({len(self.payload)} bytes)")


class DispatchError(AiocommError):
    """The server could not dispatch the request (a reply status other than 0 and 1)."""

    status: int = -1

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.message = message
        super().__init__(message or f"dispatch failed with reply status {self.status}")


class _NotExistError(DispatchError):
    def __init__(
        self,
        message: str = "",
        *,
        identity: object = None,
        facet: str = "",
        operation: str = "",
        status: int | None = None,
    ) -> None:
        self.identity = identity
        self.facet = facet
        self.operation = operation
        super().__init__(message, status=status)


class ObjectNotExistError(_NotExistError):
    """No servant for the target identity (reply status 2)."""

    status = 2


class FacetNotExistError(_NotExistError):
    """No servant for the target facet (reply status 3)."""

    status = 3


class OperationNotExistError(_NotExistError):
    """The servant has no such operation (reply status 4)."""

    status = 4


class UnknownError(DispatchError):
    """The servant raised something that is not a user exception (reply status 7)."""

    status = 7


class UnknownLocalError(UnknownError):
    """The server hit a local (runtime) error while dispatching (reply status 5)."""

    status = 5


class UnknownUserError(UnknownError):
    """The servant raised a user exception the server could not marshal (reply status 6)."""

    status = 6


class PermissionDeniedError(DispatchError):
    """The server's adapter refused the request (its ``authorize`` hook said no):
    reply status 9, which Ice 3.8 defines as ``Unauthorized``."""

    status = 9
