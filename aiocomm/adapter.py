"""Object adapters: a server's endpoints and the servants behind them."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._proxy_string import Endpoint, format_endpoint
from .errors import (
    AdapterDeactivatedError,
    AlreadyRegisteredError,
    CommunicatorDestroyedError,
    NotRegisteredError,
)
from .identity import Current, Identity
from .proxy import Proxy

if TYPE_CHECKING:
    from ._channel import Channel
    from ._registration import Registration
    from ._runtime import Runtime
    from .communicator import Communicator

__all__ = ["ObjectAdapter"]

logger = logging.getLogger("aiocomm")


class ObjectAdapter:
    """Listens on endpoints and dispatches requests to servants.

    Requests are dispatched once :meth:`activate` has been called; until then
    they wait. A servant is any object: a request for operation ``op`` calls
    ``servant.op(payload, current)`` (plain or ``async def``), or
    ``servant.ice_invoke(payload, current)`` when the servant has one.
    """

    def __init__(self, communicator: Communicator, channel: Channel, runtime: Runtime, name: str,
                 core_ids: list[int], published: tuple[Endpoint, ...],
                 authorize: Callable[[Current], bool] | None = None, *,
                 registration: Registration | None = None) -> None:
        self._communicator = weakref.ref(communicator)
        # What its proxies bind to, and what typed parameters decode against
        # (native_dispatch.cpp reads it): proxies in them bind to it.
        self._channel = weakref.ref(channel)
        # Asked before every dispatch (native_dispatch.cpp; Runtime._unauthorized).
        self._authorize = authorize
        self._runtime = runtime
        self._name = name
        self._core_ids = core_ids
        self._published = published
        self._servants: dict[tuple[Identity, str], object] = {}
        self._default_servants: dict[str, object] = {}
        self._active = False
        self._deactivated = False
        self._abandon_timer: asyncio.TimerHandle | None = None
        # With an adapter_id: the registration with the locator (_registration.py).
        self._registration = registration
        self._activated: asyncio.Future[None] | None = None  # what activate() returns
        # Requests wait (natively) until activate().
        runtime.add_adapter(self, core_ids, self._servants, self._default_servants, authorize,
                            self._on_communicator_closed)

    # ----------------------------------------------------------- servants

    def add(self, servant: object, identity: str | Identity, facet: str = "") -> Proxy:
        """Registers ``servant`` under ``identity`` and returns a proxy to it."""
        if servant is None:
            raise TypeError("servant must not be None")
        key = (Identity.of(identity), facet)
        self._check_live()
        if key in self._servants:
            raise AlreadyRegisteredError(f"a servant is already registered as {key[0]}"
                                         + (f" -f {facet}" if facet else ""))
        self._servants[key] = servant
        return self.create_proxy(key[0], facet=facet)

    def remove(self, identity: str | Identity, facet: str = "") -> object:
        """Unregisters and returns the servant registered under ``identity``."""
        key = (Identity.of(identity), facet)
        try:
            return self._servants.pop(key)
        except KeyError:
            raise NotRegisteredError(f"no servant is registered as {key[0]}") from None

    def find(self, identity: str | Identity, facet: str = "") -> object | None:
        return self._servants.get((Identity.of(identity), facet))

    def add_default_servant(self, servant: object, category: str = "") -> None:
        """Registers ``servant`` for every identity of ``category`` (``""``: any
        identity) that has no servant of its own."""
        if servant is None:
            raise TypeError("servant must not be None")
        self._check_live()
        if category in self._default_servants:
            raise AlreadyRegisteredError(f"a default servant is already registered for "
                                         f"category {category!r}")
        self._default_servants[category] = servant

    def remove_default_servant(self, category: str = "") -> object:
        try:
            return self._default_servants.pop(category)
        except KeyError:
            raise NotRegisteredError(f"no default servant for category {category!r}") from None

    def find_default_servant(self, category: str = "") -> object | None:
        return self._default_servants.get(category)

    def _locate(self, identity: Identity, facet: str) -> object | None:
        servant = self._servants.get((identity, facet))
        if servant is not None:
            return servant
        if facet:
            return None
        servant = self._default_servants.get(identity.category)
        if servant is None:
            servant = self._default_servants.get("")
        return servant

    def create_proxy(self, identity: str | Identity, *, facet: str = "") -> Proxy:
        """A proxy for ``identity`` at this adapter's endpoints; for an adapter
        with an ``adapter_id``, an indirect one (``identity @ adapter_id``, or the
        replica group's id) that the locator resolves."""
        channel = self._channel()
        if channel is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        registration = self._registration
        if registration is not None:
            return Proxy(channel, Identity.of(identity), facet, (),
                         adapter_id=registration.proxy_id, locator=registration.locator)
        return Proxy(channel, Identity.of(identity), facet, self._published)

    def create_direct_proxy(self, identity: str | Identity, *, facet: str = "") -> Proxy:
        """A proxy for ``identity`` at this adapter's published endpoints (never indirect)."""
        channel = self._channel()
        if channel is None:
            raise CommunicatorDestroyedError("the communicator has been destroyed or collected")
        return Proxy(channel, Identity.of(identity), facet, self._published)

    # ---------------------------------------------------------- lifecycle

    def activate(self) -> asyncio.Future[None]:
        """Starts dispatching requests at once (those that arrived before wait
        until now), and returns a future that completes when the adapter is
        registered with the locator: at once for an adapter without an
        ``adapter_id``, whose callers may ignore it.

        With an ``adapter_id`` the future fails with the registry's refusal
        (:class:`~aiocomm.AdapterNotFoundError`,
        :class:`~aiocomm.AdapterAlreadyActiveError`,
        :class:`~aiocomm.InvalidReplicaGroupError`) or
        :class:`~aiocomm.LocatorUnreachableError`; the adapter keeps
        dispatching (direct proxies reach it). Await it: a failure nobody
        retrieves is reported by asyncio when the future is collected, as a
        registration that silently did not happen should be. Calling it again
        returns the same future."""
        self._check_live()
        if self._activated is None:
            if self._registration is not None:
                self._activated = self._registration.start(
                    self.create_direct_proxy(Identity("dummy")))
            else:
                self._activated = self._runtime.loop.create_future()
                self._activated.set_result(None)
        registration = self._activated
        if self._active:
            return registration
        self._active = True
        self._runtime.activate_adapter(self._core_ids)
        return registration

    def _clear_registration(self) -> asyncio.Task[None] | None:
        """Starts taking the registration back, if any; the task while it runs."""
        return None if self._registration is None else self._registration.clear()

    def deactivate(self) -> asyncio.Future[None]:
        """Stops accepting connections and requests, closes this adapter's
        connections gracefully, and returns an awaitable that completes once
        the dispatches in flight have finished. Idempotent.

        The wait is bounded by the communicator's ``close_timeout``: past it,
        the dispatches still running are logged and abandoned (their replies
        dropped, their connections aborted) and the awaitable completes."""
        loop = self._runtime.loop
        if not self._deactivated:
            self._deactivated = True
            # What it held and what arrives from now on is refused.
            self._runtime.deactivate_adapter(self._core_ids)
            handle = self._runtime.handle_ref()
            if handle is not None and not handle.destroying:
                for core_id in self._core_ids:
                    handle.deactivate_adapter(core_id)
                self._clear_registration()
        unregistration = None if self._registration is None else self._registration.clearing
        if unregistration is not None:
            # Complete once the registry no longer has this adapter too.
            return loop.create_task(_all_done(self._idle_future(loop), unregistration))
        return self._idle_future(loop)

    def _idle_future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        idle = self._runtime.wait_idle(self)
        if idle.done():
            return idle
        if self._abandon_timer is None:
            communicator = self._communicator()
            timeout = communicator.options["close_timeout"] if communicator is not None else 0.0
            self._abandon_timer = loop.call_later(timeout, self._abandon_dispatches, timeout)
            idle.add_done_callback(self._cancel_abandon_timer)
        return idle

    def _cancel_abandon_timer(self, _: object = None) -> None:
        if self._abandon_timer is not None:
            self._abandon_timer.cancel()
            self._abandon_timer = None

    def _abandon_dispatches(self, timeout: float) -> None:
        self._abandon_timer = None
        # Each abandoned dispatch ends: the waiters wake when the last has.
        self._runtime.abandon(self._runtime.dispatches_of(self),
                              f"adapter {self._name!r} deactivated {timeout:g} s ago")

    async def destroy(self) -> None:
        """Deactivates, waits for dispatches in flight, and forgets every servant."""
        await self.deactivate()
        self._runtime.remove_adapter(self._core_ids)
        self._servants.clear()
        self._default_servants.clear()

    def _refuse_held(self) -> None:
        self._runtime.refuse_held(self._core_ids)

    def _on_communicator_closed(self) -> None:
        self._deactivated = True
        # The connections are gone: what was held is dropped, unanswered.
        self._runtime.deactivate_adapter(self._core_ids, answer=False)
        self._cancel_abandon_timer()

    def _check_live(self) -> None:
        if self._deactivated:
            communicator = self._communicator()
            handle = self._runtime.handle_ref()
            # Refused from the start of destroy, not only once it has finished.
            if communicator is None or handle is None or handle.destroying:
                raise CommunicatorDestroyedError("the communicator has been destroyed")
            raise AdapterDeactivatedError(f"object adapter {self._name!r} has been deactivated")

    # --------------------------------------------------------- properties

    @property
    def adapter_id(self) -> str | None:
        return None if self._registration is None else self._registration.adapter_id

    @property
    def replica_group_id(self) -> str | None:
        return None if self._registration is None else self._registration.replica_group_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def endpoints(self) -> list[str]:
        """The endpoints proxies use to reach this adapter (the real ports)."""
        return [format_endpoint(e) for e in self._published]

    @property
    def communicator(self) -> Communicator | None:
        return self._communicator()

    @property
    def is_active(self) -> bool:
        return self._active and not self._deactivated

    @property
    def is_deactivated(self) -> bool:
        return self._deactivated

    def __repr__(self) -> str:
        state = "deactivated" if self._deactivated else "active" if self._active else "holding"
        return f"<ObjectAdapter {self._name!r} {state} {' : '.join(self.endpoints)}>"


async def _all_done(*awaitables: asyncio.Future[None]) -> None:
    for awaitable in awaitables:
        await awaitable
