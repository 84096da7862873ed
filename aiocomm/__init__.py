"""aiocomm: an asyncio-native RPC communicator with a C++ core, speaking the Ice protocol."""

from __future__ import annotations

import atexit

from . import _core
from .adapter import ObjectAdapter
from .communicator import Communicator
from .errors import (
    AdapterAlreadyActiveError,
    AdapterDeactivatedError,
    AdapterNotFoundError,
    AiocommError,
    AlreadyRegisteredError,
    CommunicatorDestroyedError,
    ConnectionLostError,
    ConnectionRefusedError,
    ConnectTimeoutError,
    DispatchError,
    FacetNotExistError,
    InvalidReplicaGroupError,
    InvocationTimeoutError,
    LocatorTimeoutError,
    LocatorUnreachableError,
    MarshalError,
    MessageSizeError,
    NotRegisteredError,
    ObjectNotExistError,
    OperationNotExistError,
    PermissionDeniedError,
    ProtocolError,
    ProxyParseError,
    RegistrationError,
    TLSError,
    UnknownError,
    UnknownLocalError,
    UnknownUserError,
    UserError,
    WrongLoopError,
)
from .identity import Current, Identity, OperationMode
from .proxy import Proxy
from .tls import TLS, TLSInfo

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "AdapterAlreadyActiveError",
    "AdapterDeactivatedError",
    "AdapterNotFoundError",
    "AiocommError",
    "AlreadyRegisteredError",
    "Communicator",
    "CommunicatorDestroyedError",
    "ConnectTimeoutError",
    "ConnectionLostError",
    "ConnectionRefusedError",
    "Current",
    "DispatchError",
    "FacetNotExistError",
    "Identity",
    "InvalidReplicaGroupError",
    "InvocationTimeoutError",
    "LocatorTimeoutError",
    "LocatorUnreachableError",
    "MarshalError",
    "MessageSizeError",
    "NotRegisteredError",
    "ObjectAdapter",
    "ObjectNotExistError",
    "OperationMode",
    "OperationNotExistError",
    "PermissionDeniedError",
    "ProtocolError",
    "Proxy",
    "ProxyParseError",
    "RegistrationError",
    "TLSError",
    "TLSInfo",
    "UnknownError",
    "UnknownLocalError",
    "UnknownUserError",
    "UserError",
    "WrongLoopError",
]

# Interpreter exit is a lifecycle event: join every native thread while the
# interpreter is whole, so none of them touches Python once it is finalizing.
atexit.register(_core.teardown_all)
