"""One object adapter's registration with a locator's registry.

An adapter created with an ``adapter_id`` holds a :class:`Registration`:
``start`` (from ``activate()``) tells the registry where the adapter listens
and returns the future ``activate()`` hands out; ``clear`` (from deactivate,
and from destroy) takes the endpoints back. This module knows the locator
client and the proxy, never the adapter.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .proxy import Proxy

if TYPE_CHECKING:
    from ._locator import LocatorClient

__all__ = ["Registration"]

logger = logging.getLogger("aiocomm")


class Registration:
    """The registration of adapter ``adapter_id`` (a replica of ``replica_group_id``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, locator: LocatorClient, adapter_id: str,
                 replica_group_id: str | None, name: str) -> None:
        self._loop = loop
        self._locator = locator
        self.adapter_id = adapter_id
        self.replica_group_id = replica_group_id
        self._name = name  # the adapter's, for the log
        self._started: asyncio.Task[None] | None = None
        self._registered = False  # the registry holds our endpoints
        self._clearing: asyncio.Task[None] | None = None

    @property
    def locator(self) -> LocatorClient:
        return self._locator

    @property
    def proxy_id(self) -> str:
        """What the adapter's indirect proxies name: the group, else the adapter."""
        return self.replica_group_id or self.adapter_id

    def start(self, direct: Proxy) -> asyncio.Future[None]:
        """Registers ``direct``'s endpoints (once); the future of it, which fails
        with the registry's refusal (typed) or LocatorUnreachableError."""
        if self._started is None:
            self._started = self._loop.create_task(self._register(direct))
        return self._started

    async def _register(self, direct: Proxy) -> None:
        await self._locator.register(self.adapter_id, self.replica_group_id, direct)
        self._registered = True

    def clear(self) -> asyncio.Task[None] | None:
        """Starts taking the registration back (once, after a registration still
        under way); the task doing it while it runs, else None. Never raises:
        a failure is logged, the adapter is going away anyway."""
        if self._clearing is None and self._started is not None:
            self._clearing = self._loop.create_task(self._unregister())
        return self.clearing

    @property
    def clearing(self) -> asyncio.Task[None] | None:
        """The task taking the registration back, while it runs."""
        task = self._clearing
        return None if task is None or task.done() else task

    async def _unregister(self) -> None:
        started = self._started
        if started is not None and not started.done():
            await asyncio.wait([started])  # its outcome is activate()'s caller's
        if not self._registered:
            return
        self._registered = False
        try:
            await self._locator.register(self.adapter_id, self.replica_group_id, None)
        except Exception as error:
            logger.warning("adapter %r: could not clear its registration: %s", self._name, error)
