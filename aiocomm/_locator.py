"""The client side of a locator (IceGrid's registry, or any ``Ice::Locator``).

A :class:`LocatorClient` resolves proxies without endpoints: an indirect one
(``hello@HelloAdapter``) through ``findAdapterById``, a well-known one
(``hello``) through ``findObjectById``. What it resolves is cached for
``cache_timeout`` seconds (``-1``: until a connection to it fails, ``0``: not
at all). A call whose cached endpoints cannot be reached drops the entry and
asks the locator once more. It also registers object adapters through the
locator's ``LocatorRegistry``.

The communicator keeps one client per locator proxy (:class:`LocatorClients`,
reached through its channel) and hands them to the proxies and adapters that
use them; this module knows the proxy and the channel, never the
communicator or the adapter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from importlib import resources
from types import ModuleType
from typing import Any, TypeVar

from ._channel import Channel
from ._fallback import with_fallback
from ._proxy_string import Endpoint, parse_endpoint
from .errors import (
    AdapterAlreadyActiveError,
    AdapterNotFoundError,
    ConnectionLostError,
    ConnectionRefusedError,
    ConnectTimeoutError,
    InvalidReplicaGroupError,
    InvocationTimeoutError,
    LocatorTimeoutError,
    LocatorUnreachableError,
    NotRegisteredError,
    ProxyParseError,
    RegistrationError,
    UserError,
)
from .identity import Identity
from .proxy import Proxy, parse

__all__ = ["LocatorClient", "LocatorClients"]

logger = logging.getLogger("aiocomm")

_T = TypeVar("_T")
_Key = tuple[str, object]  # ("adapter", id) or ("object", Identity)

_slice: ModuleType | None = None


def _ice() -> Any:
    """The generated ``Ice`` module of ``_locator.ice`` (loaded on first use)."""
    global _slice
    if _slice is None:
        from .slice import load  # the Slice front end is loaded only by locator users

        with resources.as_file(resources.files(__package__).joinpath("_locator.ice")) as path:
            _slice = load(path).Ice
    return _slice


def _ice_id(error: BaseException) -> str | None:
    # By type id, not class: a later Slice load may register its own classes.
    return getattr(type(error), "_ice_id", None)


def _endpoints_of(proxy: Proxy) -> tuple[Endpoint, ...]:
    return tuple(parse_endpoint(text) for text in proxy.endpoints)


def _stale(error: BaseException, idempotent: bool) -> bool:
    """Whether ``error`` says the resolved endpoints are stale and the call may
    go again: nothing was sent, or only an idempotent request was."""
    if isinstance(error, ConnectionRefusedError | ConnectTimeoutError):
        return True
    return idempotent and isinstance(error, ConnectionLostError)


class LocatorClients:
    """A communicator's locator clients, one per locator proxy (shared by
    every proxy and adapter that names the same locator)."""

    def __init__(self, cache_timeout: float, default_timeout: float) -> None:
        self._cache_timeout = cache_timeout
        self._default_timeout = default_timeout
        self._clients: dict[str, LocatorClient] = {}

    def client(self, channel: Channel, locator: object) -> LocatorClient | None:
        """The client of ``locator`` (a proxy, a typed proxy, its string, or None
        for none); ``channel`` parses a string. The channel is an argument, not
        kept: the channel holds this registry."""
        if locator is None:
            return None
        if isinstance(locator, str):
            proxy = parse(channel, locator)
        else:
            inner = locator if isinstance(locator, Proxy) else getattr(locator, "proxy", None)
            if not isinstance(inner, Proxy):
                raise TypeError("a locator is a proxy, a typed proxy or a proxy string, not "
                                f"{type(locator).__name__}")
            proxy = inner
        if proxy.adapter_id is not None:
            raise ProxyParseError(f"a locator proxy needs endpoints, not {proxy}")
        key = str(proxy)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = LocatorClient(proxy, self._cache_timeout,
                                                        self._default_timeout)
        return client


class _Entry:
    __slots__ = ("at", "value")

    def __init__(self, value: Any, at: float) -> None:
        self.value = value  # endpoints (adapter) or a Proxy (object)
        self.at = at


class LocatorClient:
    """Resolves and registers through one locator proxy (see the module's doc).

    Every method runs on the communicator's loop.
    """

    def __init__(self, proxy: Proxy, cache_timeout: float, default_timeout: float) -> None:
        if proxy.adapter_id is not None:
            raise ValueError(f"a locator proxy needs endpoints, not {proxy}")
        self._proxy = proxy.twoway()
        self._cache_timeout = cache_timeout
        # What bounds a locator request when the call has no timeout of its own.
        self._default_timeout = default_timeout
        self._cache: dict[_Key, _Entry] = {}
        self._lookups: dict[_Key, asyncio.Task[Any]] = {}
        self._registry: Any = None

    @property
    def proxy(self) -> Proxy:
        return self._proxy

    @property
    def cache_timeout(self) -> float:
        return self._cache_timeout

    # ------------------------------------------------------------ calls

    def invoke(self, proxy: Proxy, operation: str, payload: Any, idempotent: bool,
               context: dict[str, str] | None, timeout: float | None) -> asyncio.Future[bytes]:
        """Resolves ``proxy`` (an indirect or well-known one) and sends the request
        to what it resolved; ``timeout`` bounds both."""
        loop = asyncio.get_running_loop()
        endpoints = self._fresh(proxy, loop.time())
        if endpoints is None:
            return loop.create_task(self._call(loop, proxy, operation, payload, idempotent,
                                               context, timeout))
        # Resolved already: straight to the endpoints, at the cost of one
        # future; only a failure to connect takes the way through the locator.
        started = loop.time()
        first = proxy.resolved(endpoints).invoke(operation, payload, idempotent=idempotent,
                                                 context=context, timeout=timeout)

        def retry(error: BaseException) -> asyncio.Future[bytes] | None:
            if not _stale(error, idempotent):
                return None
            self.forget(proxy)
            left = None if timeout is None else timeout - (loop.time() - started)
            if left is not None and left <= 0:
                return None
            return loop.create_task(self._call(loop, proxy, operation, payload, idempotent,
                                               context, left, attempts=1))

        return with_fallback(loop, first, retry)

    def _fresh(self, proxy: Proxy, now: float) -> tuple[Endpoint, ...] | None:
        """What the cache holds, still valid, for ``proxy``; None if it must ask."""
        adapter_id = proxy.adapter_id
        if not adapter_id:
            entry = self._cache.get(("object", proxy.identity))
            if entry is None or not self._valid(entry, now):
                return None
            found: Proxy = entry.value
            if found.adapter_id is None:
                return _endpoints_of(found)
            adapter_id = found.adapter_id
            if not adapter_id:
                return None
        entry = self._cache.get(("adapter", adapter_id))
        if entry is None or not self._valid(entry, now):
            return None
        endpoints: tuple[Endpoint, ...] = entry.value
        return endpoints

    def _valid(self, entry: _Entry, now: float) -> bool:
        return self._cache_timeout < 0 or now - entry.at < self._cache_timeout

    async def _call(self, loop: asyncio.AbstractEventLoop, proxy: Proxy, operation: str,
                    payload: Any, idempotent: bool, context: dict[str, str] | None,
                    timeout: float | None, attempts: int = 2) -> bytes:
        deadline = None if timeout is None else loop.time() + timeout
        for attempt in range(2 - attempts, 2):
            endpoints, cached = await self.resolve(proxy, self._left(loop, deadline))
            left = None if deadline is None else max(deadline - loop.time(), 1e-3)
            try:
                return await proxy.resolved(endpoints).invoke(
                    operation, payload, idempotent=idempotent, context=context, timeout=left)
            except (ConnectionRefusedError, ConnectTimeoutError, ConnectionLostError) as error:
                # What the locator said may be stale: drop it; ask again once
                # if it came from the cache and the call may go again.
                self.forget(proxy)
                if attempt or not cached or not _stale(error, idempotent):
                    raise
        raise AssertionError("unreachable")

    def _left(self, loop: asyncio.AbstractEventLoop, deadline: float | None) -> float:
        if deadline is None:
            return self._default_timeout
        left = deadline - loop.time()
        if left <= 0:
            raise LocatorTimeoutError("no time left to ask the locator")
        return left

    # ------------------------------------------------------- resolution

    async def resolve(self, proxy: Proxy, timeout: float) -> tuple[tuple[Endpoint, ...], bool]:
        """The endpoints of ``proxy``, and whether they came from the cache.

        Raises NotRegisteredError for an unknown adapter or object,
        LocatorUnreachableError (LocatorTimeoutError) when the locator cannot
        be asked (does not answer within ``timeout``)."""
        adapter_id = proxy.adapter_id
        if adapter_id is None:
            raise ValueError(f"proxy {proxy} is direct: nothing to resolve")
        if adapter_id:
            return await self._adapter(adapter_id, timeout)
        found, cached = await self._lookup(("object", proxy.identity), timeout,
                                           self._find_object)
        assert isinstance(found, Proxy)
        if found.adapter_id is None:
            return _endpoints_of(found), cached
        if not found.adapter_id:
            raise NotRegisteredError(f"the locator returned no endpoints for object "
                                     f"'{proxy.identity}'")
        endpoints, adapter_cached = await self._adapter(found.adapter_id, timeout)
        return endpoints, cached and adapter_cached

    async def _adapter(self, adapter_id: str,
                       timeout: float) -> tuple[tuple[Endpoint, ...], bool]:
        found, cached = await self._lookup(("adapter", adapter_id), timeout, self._find_adapter)
        return found, cached

    def forget(self, proxy: Proxy) -> None:
        """Drops what was cached for ``proxy`` (its connection failed)."""
        adapter_id = proxy.adapter_id
        if adapter_id:
            self._cache.pop(("adapter", adapter_id), None)
        elif adapter_id == "":
            entry = self._cache.pop(("object", proxy.identity), None)
            if entry is not None and entry.value.adapter_id:
                self._cache.pop(("adapter", entry.value.adapter_id), None)

    def forget_adapter(self, adapter_id: str) -> None:
        self._cache.pop(("adapter", adapter_id), None)

    async def _lookup(self, key: _Key, timeout: float,
                      ask: Callable[[Any, float], Coroutine[Any, Any, Any]]) -> tuple[Any, bool]:
        loop = asyncio.get_running_loop()
        entry = self._cache.get(key)
        if entry is not None:
            if self._valid(entry, loop.time()):
                return entry.value, True
            del self._cache[key]
        # Concurrent calls for one key share one request to the locator; a
        # caller that gives up (cancelled, out of time) does not end it for
        # the others.
        task = self._lookups.get(key)
        if task is None:
            task = loop.create_task(ask(key[1], timeout))
            self._lookups[key] = task
            task.add_done_callback(lambda done: self._looked_up(key, done))
        try:
            value = await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception() from None  # type: ignore[misc]
            raise LocatorTimeoutError(f"the locator {self._proxy} did not answer within "
                                      f"{timeout:g} s") from None
        return value, False

    def _looked_up(self, key: _Key, task: asyncio.Task[Any]) -> None:
        if self._lookups.get(key) is task:
            del self._lookups[key]
        if task.cancelled() or task.exception() is not None:  # retrieved: the callers have it
            return
        if self._cache_timeout != 0:
            self._cache[key] = _Entry(task.result(), task.get_loop().time())

    async def _find_adapter(self, adapter_id: str, timeout: float) -> tuple[Endpoint, ...]:
        locator = _ice().LocatorPrx(self._proxy.with_timeout(timeout))
        try:
            found = await self._ask(locator.findAdapterById(adapter_id), timeout)
        except UserError as error:
            if _ice_id(error) == "::Ice::AdapterNotFoundException":
                raise NotRegisteredError(f"the locator knows no adapter '{adapter_id}'") from None
            raise
        if found is None or found.adapter_id is not None:
            raise NotRegisteredError(f"the locator has no endpoints for adapter '{adapter_id}'")
        return _endpoints_of(found)

    async def _find_object(self, identity: Identity, timeout: float) -> Proxy:
        from .slice import ice as standard  # Ice::Identity

        locator = _ice().LocatorPrx(self._proxy.with_timeout(timeout))
        try:
            found = await self._ask(
                locator.findObjectById(standard.Identity(identity.name, identity.category)),
                timeout)
        except UserError as error:
            if _ice_id(error) == "::Ice::ObjectNotFoundException":
                raise NotRegisteredError(f"the locator knows no object '{identity}'") from None
            raise
        if found is None:
            raise NotRegisteredError(f"the locator knows no object '{identity}'")
        assert isinstance(found, Proxy)
        return found

    async def _ask(self, call: Awaitable[_T], timeout: float, what: str = "") -> _T:
        """One request to the locator (or to its registry, ``what``), its transport
        failures turned into LocatorUnreachableError."""
        what = what or f"the locator {self._proxy}"
        try:
            return await call
        except InvocationTimeoutError as error:  # ConnectTimeoutError too
            raise LocatorTimeoutError(f"{what} did not answer within {timeout:g} s "
                                      f"({error})") from error
        except ConnectionError as error:
            raise LocatorUnreachableError(f"cannot reach {what}: {error}") from error

    # ------------------------------------------------------ registration

    async def register(self, adapter_id: str, replica_group_id: str | None,
                       proxy: Proxy | None, timeout: float | None = None) -> None:
        """Tells the locator's registry where adapter ``adapter_id`` (in replica group
        ``replica_group_id``) listens: ``proxy``'s endpoints, or nowhere (None)."""
        timeout = self._default_timeout if timeout is None else timeout
        cached = self._registry is not None
        try:
            try:
                await self._set(adapter_id, replica_group_id, proxy, timeout)
            except LocatorUnreachableError:
                if not cached:
                    raise
                # The registry proxy asked for earlier may be stale (a
                # restarted IceGrid listens elsewhere): ask the locator again.
                await self._set(adapter_id, replica_group_id, proxy, timeout)
        except UserError as error:
            kind = _ice_id(error)
            if kind == "::Ice::AdapterNotFoundException":
                # IceGrid's answer too when a dynamic adapter asks to join a
                # group declared in an application descriptor.
                group = (f" into replica group '{replica_group_id}' (a group declared in "
                         "an application takes only its deployed adapters)"
                         if replica_group_id else "")
                raise AdapterNotFoundError(f"the registry does not accept adapter "
                                           f"'{adapter_id}'{group}; is dynamic registration "
                                           "on?") from error
            if kind == "::Ice::AdapterAlreadyActiveException":
                raise AdapterAlreadyActiveError(f"adapter '{adapter_id}' is registered and "
                                                "active elsewhere") from error
            if kind == "::Ice::InvalidReplicaGroupIdException":
                raise InvalidReplicaGroupError(f"adapter '{adapter_id}' may not join replica "
                                               f"group '{replica_group_id}'") from error
            raise
        finally:
            # Whatever this process resolved for these ids may be stale now.
            self.forget_adapter(adapter_id)
            if replica_group_id:
                self.forget_adapter(replica_group_id)

    async def _set(self, adapter_id: str, replica_group_id: str | None, proxy: Proxy | None,
                   timeout: float) -> None:
        ice = _ice()
        registry = self._registry
        fresh = registry is None
        if registry is None:
            locator = ice.LocatorPrx(self._proxy.with_timeout(timeout))
            registry = await self._ask(locator.getRegistry(), timeout)
            if registry is None:
                raise RegistrationError(f"the locator {self._proxy} has no registry")
        what = f"the locator's registry {registry.proxy}"
        registry = registry.with_timeout(timeout)
        try:
            if replica_group_id:
                await self._ask(registry.setReplicatedAdapterDirectProxy(
                    adapter_id, replica_group_id, proxy), timeout, what)
            else:
                await self._ask(registry.setAdapterDirectProxy(adapter_id, proxy), timeout,
                                what)
        except LocatorUnreachableError:
            self._registry = None
            raise
        if fresh:
            self._registry = registry
