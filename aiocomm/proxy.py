"""Proxies: a client's handle on a remote object."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Mapping
from threading import get_ident as _get_ident
from typing import TYPE_CHECKING, Any, Protocol

from . import _core
from ._channel import Channel
from ._encoding import decode_bool, decode_string, decode_string_seq, encode_string
from ._fallback import with_fallback
from ._proxy_string import Endpoint, format_adapter_id, format_endpoint, parse_proxy
from .errors import (
    CommunicatorDestroyedError,
    ConnectionRefusedError,
    ConnectTimeoutError,
    MessageSizeError,
    NotRegisteredError,
)
from .identity import Identity
from .tls import require_tls

if TYPE_CHECKING:
    from .communicator import Communicator

__all__ = ["Proxy", "parse"]

_NORMAL, _IDEMPOTENT = 0, 2
_UNSET: Any = object()


class Resolver(Protocol):
    """What an indirect proxy calls through: the client side of a locator
    (``aiocomm._locator.LocatorClient``), handed in by the communicator."""

    @property
    def proxy(self) -> Proxy: ...

    def invoke(self, proxy: Proxy, operation: str, payload: Any, idempotent: bool,
               context: dict[str, str] | None, timeout: float | None) -> asyncio.Future[bytes]:
        ...


class Proxy:
    """An immutable reference to an Ice object: identity, facet, mode and endpoints.

    Made by :meth:`Communicator.proxy <aiocomm.Communicator.proxy>` and by
    adapters. Proxies hold their communicator's channel weakly: a proxy does
    not keep a communicator alive, and calls through a proxy whose
    communicator is gone raise :class:`~aiocomm.CommunicatorDestroyedError`.
    """

    __slots__ = ("__weakref__", "_adapter_id", "_cached", "_channel", "_context",
                 "_endpoints", "_facet", "_identity", "_locator", "_oneway", "_prefix",
                 "_resolved", "_rotation", "_target", "_timeout")

    def __init__(self, channel: Channel, identity: Identity, facet: str,
                 endpoints: tuple[Endpoint, ...], *, oneway: bool = False,
                 timeout: float | None = None, context: Mapping[str, str] | None = None,
                 adapter_id: str | None = None, locator: Resolver | None = None,
                 connection_cached: bool = True) -> None:
        self._channel = weakref.ref(channel)
        self._identity = identity
        self._facet = facet
        self._endpoints = endpoints
        self._oneway = oneway
        self._timeout = timeout
        self._context = _checked_context(context) if context else None
        self._prefix = _core.encode_identity_facet(identity.name, identity.category, facet)
        # No endpoints: indirect ("" well-known, else an adapter or replica
        # group id), resolved through the locator at each call (it caches).
        self._adapter_id = None if endpoints else (adapter_id or "")
        self._locator = locator
        self._cached = connection_cached
        # The direct copy made for the endpoints last resolved (see resolved()).
        self._resolved: Proxy | None = None
        # connection_cached=False over several endpoints: one target per
        # endpoint it starts from, taken in turn by successive requests.
        self._rotation: tuple[list[Proxy], itertools.cycle[Proxy]] | None = None
        self._target: Any = _target(endpoints) if endpoints else None
        if not connection_cached and len(endpoints) > 1:
            # Successive requests go to successive endpoints (each over its
            # own connection); one that cannot connect falls back to the
            # whole list (_balanced), so a dead endpoint never costs the call.
            singles = [Proxy(channel, identity, facet, (e,), oneway=oneway, timeout=timeout,
                             context=context) for e in endpoints]
            for single in singles:
                # A key of their own while connecting: a request for the whole
                # list must not ride (and fail with) an attempt on a dead
                # endpoint; once connected, the connection is shared as usual.
                single._target = _target(single._endpoints, "balanced|")
            self._rotation = (singles, itertools.cycle(singles))

    # -------------------------------------------------------------- calls

    def invoke(self, operation: str, payload: Any = b"", *, idempotent: bool = False,
               context: Mapping[str, str] | None = None,
               timeout: float | None = None) -> asyncio.Future[bytes]:
        """Sends ``operation`` with ``payload`` (the encoded in-parameters) and returns an
        awaitable for the reply's encoded out-parameters.

        A oneway proxy's awaitable completes (with ``b""``) once the request is written.
        Raises :class:`~aiocomm.CommunicatorDestroyedError` after destroy.
        """
        channel = self._channel()
        if channel is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        if type(operation) is not str:
            raise TypeError(f"operation must be a str, not {type(operation).__name__}")
        if payload is None:
            payload = b""
        elif type(payload) is not bytes and not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")
        runtime = channel.runtime
        # On the loop's own thread with that loop running, it is the running
        # loop (one per thread); cheaper to check than get_running_loop(),
        # which makes a getpid() system call on every call in CPython 3.11.
        if (runtime is None or channel.closing
                or _get_ident() != runtime.thread_id or not runtime.loop.is_running()):
            runtime = channel.runtime_for_call()  # binds, or raises the right error
        if timeout is None:
            timeout = self._timeout
            if timeout is None:
                timeout = channel.invocation_timeout
        else:
            _check_timeout(timeout)
        if context is None:
            context = self._context
        else:
            context = _checked_context(context)
        target = self._target
        if target is None:
            locator = self._locator
            if locator is None:
                raise NotRegisteredError(f"proxy '{self}' has no endpoints and no locator to find "
                                         "them (Communicator(locator=...), with_locator())")
            return locator.invoke(self, operation, payload, idempotent, context, timeout)
        if self._rotation is not None:
            return self._balanced(runtime.loop, next(self._rotation[1]), operation, payload,
                                  idempotent, context, timeout)
        handle = channel.handle
        del channel  # a pending call does not keep the communicator's state alive
        if timeout is None and not self._oneway:
            # The common call: one native step, its future completed natively.
            try:
                return handle.call(target, self._prefix, operation,  # type: ignore[no-any-return]
                                   _IDEMPOTENT if idempotent else _NORMAL, context, payload,
                                   idempotent, runtime.batching or runtime.defer(),
                                   runtime.create_future)
            except _core.DestroyedError:
                raise CommunicatorDestroyedError("the communicator has been destroyed") from None
            except _core.MessageSizeError as error:
                raise MessageSizeError(str(error)) from None
        return runtime.invoke(handle, target, self._prefix, operation,
                              _IDEMPOTENT if idempotent else _NORMAL, context, payload,
                              self._oneway, idempotent, timeout)

    def _balanced(self, loop: asyncio.AbstractEventLoop, single: Proxy, operation: str,
                  payload: Any, idempotent: bool, context: dict[str, str] | None,
                  timeout: float | None) -> asyncio.Future[bytes]:
        """The request through ``single`` (this request's endpoint); if it cannot
        connect there, nothing was sent, and any endpoint of the list takes it."""
        first = single.invoke(operation, payload, idempotent=idempotent, context=context,
                              timeout=timeout)

        def elsewhere(error: BaseException) -> asyncio.Future[bytes] | None:
            if not isinstance(error, ConnectionRefusedError | ConnectTimeoutError):
                return None
            return self._copy(connection_cached=True).invoke(
                operation, payload, idempotent=idempotent, context=context, timeout=timeout)

        return with_fallback(loop, first, elsewhere)

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
              context: Any = _UNSET, endpoints: tuple[Endpoint, ...] | None = None,
              locator: Any = _UNSET, connection_cached: bool | None = None) -> Proxy:
        channel = self._channel()
        if channel is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        return Proxy(channel, identity if identity is not None else self._identity,
                     facet if facet is not None else self._facet,
                     self._endpoints if endpoints is None else endpoints,
                     oneway=self._oneway if oneway is None else oneway,
                     timeout=self._timeout if timeout is _UNSET else timeout,
                     context=self._context if context is _UNSET else context,
                     adapter_id=self._adapter_id,
                     locator=self._locator if locator is _UNSET else locator,
                     connection_cached=(self._cached if connection_cached is None
                                        else connection_cached))

    def resolved(self, endpoints: tuple[Endpoint, ...]) -> Proxy:
        """The direct copy of this indirect proxy for ``endpoints`` (what the
        locator resolved); kept, so that its native target is made once."""
        resolved = self._resolved
        if resolved is None or resolved._endpoints != endpoints:
            resolved = self._resolved = self._copy(endpoints=endpoints, locator=None)
        return resolved

    def with_locator(self, locator: object) -> Proxy:
        """A copy that resolves through ``locator`` (a proxy to an ``Ice::Locator``,
        a typed one, its string, or None for none). Only proxies without
        endpoints (indirect or well-known) consult it."""
        channel = self._channel()
        if channel is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        return self._copy(locator=channel.locators.client(channel, locator))

    def with_connection_cached(self, cached: bool) -> Proxy:
        """``False``: each request picks the next of the proxy's endpoints (or, for
        an indirect proxy, of those the locator returned), spreading requests over
        the replicas of a group; ``True`` (the default): every request goes over
        the connection to the first endpoint that answers, as in Ice."""
        if not isinstance(cached, bool):
            raise TypeError(f"cached must be a bool, not {type(cached).__name__}")
        return self if cached == self._cached else self._copy(connection_cached=cached)

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
    def adapter_id(self) -> str | None:
        """None for a direct proxy; ``""`` for a well-known one; else the id of the
        adapter (or replica group) the locator resolves."""
        return self._adapter_id

    @property
    def locator(self) -> Proxy | None:
        """The proxy of the locator this proxy resolves through, if any."""
        return None if self._locator is None else self._locator.proxy

    @property
    def is_connection_cached(self) -> bool:
        return self._cached

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
        channel = self._channel()
        return None if channel is None else channel.owner

    def __str__(self) -> str:
        text = str(self._identity)
        if any(ch.isspace() or ch in ":@" for ch in text):
            text = f'"{text}"'  # the parser splits on these unless quoted, as Ice's does
        if self._facet:
            text += f' -f "{self._facet}"' if " " in self._facet else f" -f {self._facet}"
        text += " -o" if self._oneway else " -t"
        text += " -e 1.1"
        if self._adapter_id:
            return f"{text} @ {format_adapter_id(self._adapter_id)}"
        return ":".join([text, *(format_endpoint(e) for e in self._endpoints)])

    def __repr__(self) -> str:
        return f"<Proxy {self}>"

    def _key(self) -> tuple[Any, ...]:
        # As Ice compares proxies: the locator and connection caching count.
        locator = None if self._locator is None else str(self._locator.proxy)
        return (str(self), self._timeout, tuple(sorted((self._context or {}).items())),
                self._cached, locator)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Proxy):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def parse(channel: Channel, text: str) -> Proxy:
    """The proxy ``text`` stands for (``"hello:tcp -h 127.0.0.1 -p 10000"``),
    bound to ``channel``; an indirect one resolves through its default locator."""
    if channel.destroy_begun():
        raise CommunicatorDestroyedError("the communicator has been destroyed")
    spec = parse_proxy(text)
    if any(e.secure for e in spec.endpoints):
        require_tls()
    return Proxy(channel, spec.identity, spec.facet, spec.endpoints,
                 oneway=spec.mode == "oneway", adapter_id=spec.adapter_id,
                 locator=channel.default_locator if spec.adapter_id is not None else None)


def _target(endpoints: tuple[Endpoint, ...], prefix: str = "") -> Any:
    # The native registry's key of each endpoint (core/outgoing.h).
    key = prefix + ":".join(f"{'127.0.0.1' if e.host == '*' else e.host}/{e.port}"
                            + ("/ssl" if e.secure else "") for e in endpoints)
    return _core.Target(key, [(e.host, e.port, e.secure) for e in endpoints])


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
