"""What proxies and adapters need of their communicator, and nothing more.

A :class:`Channel` is the communicator's shared state below the public
object: the native handle, the runtime of the loop it is bound to, the
default invocation timeout, the locators, and whether destroy has begun.
The :class:`~aiocomm.Communicator` owns exactly one and is the only thing
that holds it strongly; proxies hold it weakly, so a proxy never keeps a
communicator (or its native threads) alive, and calls through a proxy
whose communicator is gone fail cleanly.

It sits below the proxy in the package's layers (communicator > adapter >
proxy > channel > runtime), so the proxy's hot path reads plain slots of an
object made for it instead of the communicator's private attributes.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from . import _core
from ._runtime import Runtime
from .errors import CommunicatorDestroyedError, WrongLoopError

__all__ = ["Channel", "channel_of"]


class Channel:
    """The state every call through a proxy reads (see the module's doc)."""

    __slots__ = ("__weakref__", "_owner", "closing", "default_locator", "handle", "inbox",
                 "invocation_timeout", "locators", "loop", "runtime")

    def __init__(self, owner: object, handle: _core.Communicator, inbox: _core.Inbox,
                 invocation_timeout: float | None) -> None:
        # The public object, for proxy.communicator; weakly, as proxies hold this.
        self._owner = weakref.ref(owner)
        self.handle = handle
        self.inbox = inbox
        self.invocation_timeout = invocation_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtime: Runtime | None = None
        # Set by the communicator when destroy starts (the handle says so too
        # once the native side has begun; this covers the registrations'
        # clearing, which comes before).
        self.closing = False
        # The communicator's locator client (None: none), and the registry of
        # every locator client it made (``_locator.LocatorClients``). Typed
        # loosely: the locator layer sits above the proxy, which reads these.
        self.default_locator: Any = None
        self.locators: Any = None

    @property
    def owner(self) -> Any:
        """The :class:`~aiocomm.Communicator`, or None once it is collected."""
        return self._owner()

    def bind(self, loop: asyncio.AbstractEventLoop) -> Runtime:
        """Binds to ``loop`` (the running loop): the runtime that drains there."""
        self.loop = loop
        self.runtime = Runtime(loop, self.inbox, self.handle)
        return self.runtime

    def destroy_begun(self) -> bool:
        """Destroy has started (it may not have finished). Everything destroy
        refuses is refused from here on."""
        return self.closing or self.handle.destroying

    def runtime_for_call(self) -> Runtime:
        """The runtime of the running loop (binding to it on first use); raises
        when destroyed, outside a loop, or on another loop than the bound one."""
        if self.destroy_begun():
            raise CommunicatorDestroyedError("the communicator has been destroyed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("aiocomm needs a running event loop for this call") from None
        runtime = self.runtime
        if runtime is None:
            return self.bind(loop)
        if loop is not runtime.loop:
            raise WrongLoopError("this communicator belongs to another event loop")
        return runtime


def channel_of(receiver: object) -> Channel | None:
    """The channel a proxy decoded for ``receiver`` binds to. Our own decoding
    passes the channel itself; a user decoding a typed value passes the
    :class:`~aiocomm.Communicator`, which holds its channel as ``_channel``
    (the one place this layer looks at the communicator)."""
    if type(receiver) is Channel:
        return receiver
    channel = getattr(receiver, "_channel", None)
    return channel if type(channel) is Channel else None
