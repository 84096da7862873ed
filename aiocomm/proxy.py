"""Proxies: a client's handle on a remote object."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any

from . import _core
from ._encoding import decode_bool, decode_string, decode_string_seq, encode_string
from ._proxy_string import Endpoint, format_endpoint
from .errors import CommunicatorDestroyedError, MessageSizeError
from .identity import Identity

if TYPE_CHECKING:
    from .communicator import Communicator

__all__ = ["Proxy"]

_NORMAL, _IDEMPOTENT = 0, 2
_UNSET: Any = object()


class Proxy:
    """An immutable reference to an Ice object: identity, facet, mode and endpoints.

    Proxies hold their communicator weakly: a proxy does not keep a
    communicator alive, and calls through a proxy whose communicator is gone
    raise :class:`~aiocomm.CommunicatorDestroyedError`.
    """

    __slots__ = ("__weakref__", "_communicator", "_context", "_endpoints", "_facet", "_identity",
                 "_oneway", "_prefix", "_target", "_timeout")

    def __init__(self, communicator: Communicator, identity: Identity, facet: str,
                 endpoints: tuple[Endpoint, ...], *, oneway: bool = False,
                 timeout: float | None = None, context: Mapping[str, str] | None = None) -> None:
        self._communicator = weakref.ref(communicator)
        self._identity = identity
        self._facet = facet
        self._endpoints = endpoints
        self._oneway = oneway
        self._timeout = timeout
        self._context = _checked_context(context) if context else None
        self._prefix = _core.encode_identity_facet(identity.name, identity.category, facet)
        # The native registry's key of each endpoint (core/outgoing.h).
        key = ":".join(f"{'127.0.0.1' if e.host == '*' else e.host}/{e.port}"
                       + ("/ssl" if e.secure else "") for e in endpoints)
        self._target = _core.Target(key, [(e.host, e.port, e.secure) for e in endpoints])

    # -------------------------------------------------------------- calls

    def invoke(self, operation: str, payload: Any = b"", *, idempotent: bool = False,
               context: Mapping[str, str] | None = None,
               timeout: float | None = None) -> asyncio.Future[bytes]:
        """Sends ``operation`` with ``payload`` (the encoded in-parameters) and returns an
        awaitable for the reply's encoded out-parameters.

        A oneway proxy's awaitable completes (with ``b""``) once the request is written.
        Raises :class:`~aiocomm.CommunicatorDestroyedError` after destroy.
        """
        communicator = self._communicator()
        if communicator is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        if type(operation) is not str:
            raise TypeError(f"operation must be a str, not {type(operation).__name__}")
        if payload is None:
            payload = b""
        elif type(payload) is not bytes and not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")
        runtime = communicator._runtime
        # On the loop's own thread with that loop running, it is the running
        # loop (one per thread); cheaper to check than get_running_loop(),
        # which makes a getpid() system call on every call in CPython 3.11.
        if (runtime is None or communicator._destroy is not None
                or _get_ident() != runtime.thread_id or not runtime.loop.is_running()):
            runtime = communicator._runtime_for_call()  # binds, or raises the right error
        if timeout is None:
            timeout = self._timeout
            if timeout is None:
                timeout = communicator._invocation_timeout
        else:
            _check_timeout(timeout)
        if context is None:
            context = self._context
        else:
            context = _checked_context(context)
        handle = communicator._handle
        del communicator  # a pending call does not keep the communicator alive
        if timeout is None and not self._oneway:
            # The common call: one native step, its future completed natively.
            try:
                return handle.call(self._target, self._prefix, operation,  # type: ignore[no-any-return]
                                   _IDEMPOTENT if idempotent else _NORMAL, context, payload,
                                   idempotent, runtime.batching or runtime.defer(),
                                   runtime.create_future)
            except _core.DestroyedError:
                raise CommunicatorDestroyedError("the communicator has been destroyed") from None
            except _core.MessageSizeError as error:
                raise MessageSizeError(str(error)) from None
        return runtime.invoke(handle, self._target, self._prefix, operation,
                              _IDEMPOTENT if idempotent else _NORMAL, context, payload,
                              self._oneway, idempotent, timeout)

    async def ping(self, *, context: Mapping[str, str] | None = None,
                   timeout: float | None = None) -> None:
        """Checks that the object exists and is reachable (``ice_ping``)."""
        await self.invoke("ice_ping", b"", idempotent=True, context=context, timeout=timeout)

    async def ice_is_a(self, type_id: str, *, timeout: float | None = None) -> bool:
        return decode_bool(await self.twoway().invoke("ice_isA", encode_string(type_id),
                                                      idempotent=True, timeout=timeout))

    async def ice_id(self, *, timeout: float | None = None) -> str:
        return decode_string(await self.twoway().invoke("ice_id", b"", idempotent=True,
                                                        timeout=timeout))

    async def ice_ids(self, *, timeout: float | None = None) -> list[str]:
        return decode_string_seq(await self.twoway().invoke("ice_ids", b"", idempotent=True,
                                                            timeout=timeout))

    # ------------------------------------------------------------ copies

    def _copy(self, *, identity: Identity | None = None, facet: str | None = None,
              oneway: bool | None = None, timeout: Any = _UNSET,
              context: Any = _UNSET) -> Proxy:
        communicator = self._communicator()
        if communicator is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        return Proxy(communicator, identity if identity is not None else self._identity,
                     facet if facet is not None else self._facet, self._endpoints,
                     oneway=self._oneway if oneway is None else oneway,
                     timeout=self._timeout if timeout is _UNSET else timeout,
                     context=self._context if context is _UNSET else context)

    def oneway(self) -> Proxy:
        """A copy whose invocations are oneway: no reply, complete once written."""
        return self if self._oneway else self._copy(oneway=True)

    def twoway(self) -> Proxy:
        return self._copy(oneway=False) if self._oneway else self

    def with_timeout(self, timeout: float | None) -> Proxy:
        """A copy with another invocation timeout in seconds (None: the communicator's)."""
        if timeout is not None:
            _check_timeout(timeout)
        return self._copy(timeout=timeout)

    def with_context(self, context: Mapping[str, str] | None) -> Proxy:
        """A copy that sends ``context`` with every request."""
        return self._copy(context=context)

    def with_facet(self, facet: str) -> Proxy:
        return self._copy(facet=facet)

    def with_identity(self, identity: str | Identity) -> Proxy:
        return self._copy(identity=Identity.of(identity))

    # --------------------------------------------------------- properties

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def facet(self) -> str:
        return self._facet

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(format_endpoint(e) for e in self._endpoints)

    @property
    def is_oneway(self) -> bool:
        return self._oneway

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @property
    def context(self) -> dict[str, str]:
        return dict(self._context or {})

    @property
    def communicator(self) -> Communicator | None:
        return self._communicator()

    def __str__(self) -> str:
        text = str(self._identity)
        if any(ch.isspace() or ch in ":@" for ch in text):
            text = f'"{text}"'  # the parser splits on these unless quoted, as Ice's does
        if self._facet:
            text += f' -f "{self._facet}"' if " " in self._facet else f" -f {self._facet}"
        text += " -o" if self._oneway else " -t"
        text += " -e 1.1"
        return ":".join([text, *(format_endpoint(e) for e in self._endpoints)])

    def __repr__(self) -> str:
        return f"<Proxy {self}>"

    def _key(self) -> tuple[Any, ...]:
        return (str(self), self._timeout, tuple(sorted((self._context or {}).items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _checked_context(context: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(context, Mapping):
        raise TypeError(f"context must be a mapping of str to str, not {type(context).__name__}")
    checked = dict(context)
    for key, value in checked.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("context keys and values must be str")
    return checked


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
