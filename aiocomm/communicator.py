"""The Communicator: the entry point, and the owner of everything native."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import os
import threading
import traceback
import warnings
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

from . import _core
from ._channel import Channel
from ._locator import LocatorClients
from ._proxy_string import Endpoint, parse_endpoints
from ._registration import Registration
from ._runtime import Runtime, release_current_dispatch
from .adapter import ObjectAdapter
from .errors import CommunicatorDestroyedError, ProxyParseError
from .identity import Current
from .proxy import Proxy, parse
from .tls import TLS, require_tls

__all__ = ["Communicator"]

_adapter_names = itertools.count(1)


class _Completed:
    """The awaitable a blocking destroy returns: already done."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


def _resolve_destroyed(future: asyncio.Future[None], runtime: Runtime | None) -> None:
    # Deliver what the native side queued last (failed invocations, the
    # closed event) before the awaiting code resumes.
    if runtime is not None and not runtime.closed and not runtime.loop.is_closed():
        runtime.on_readable()
    if not future.done():
        future.set_result(None)


class _DestroyCompletion:
    """The waiters of one destroy, each woken on its own loop.

    No native thread calls into Python at the end of destroy: the core makes
    its ``destroyed_fd`` readable, for good (it is never drained), and every
    loop with a waiter watches it. The loops watch a ``dup`` of it, owned
    here and closed only once no loop watches it any more (libuv misbehaves
    when a watched descriptor number is closed and reused), so it stays
    valid whatever happens to the communicator meanwhile.
    """

    def __init__(self, handle: _core.Communicator, runtime: Runtime | None) -> None:
        self._lock = threading.Lock()  # waiters may come from loops on other threads
        self._handle: _core.Communicator | None = handle
        self._runtime = runtime
        self._done = False
        self._fd = -1
        # Per loop watching the descriptor, its waiters: a loop has one
        # reader (add_reader replaces the callback of a second one).
        self._watching: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}

    def waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future of ``loop`` (the running loop) that completes once destroy has.

        A future per caller: cancelling one awaiting task cancels only its
        own future, never the destroy nor the other callers' futures."""
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._done:
                futures = self._watching.get(loop)
                if futures is None:
                    futures = self._watching[loop] = []
                    self._watch(loop)
                futures.append(future)
                future.add_done_callback(self._on_waiter_done)
                return future
        # Finished already. Still resolved from the loop, not here: the caller
        # may be a servant, inside the very drain _resolve_destroyed runs.
        loop.call_soon(_resolve_destroyed, future, self._own_runtime(loop))
        return future

    def mark_done(self) -> None:
        """Destroy has finished (seen by a caller that waited for it natively)."""
        with self._lock:
            self._done = True
            self._handle = None

    def _own_runtime(self, loop: asyncio.AbstractEventLoop) -> Runtime | None:
        runtime = self._runtime
        return runtime if runtime is not None and runtime.loop is loop else None

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        # Under the lock; on `loop`'s thread, which is running it.
        if self._fd < 0:
            assert self._handle is not None
            self._fd = os.dup(self._handle.destroyed_fd)
        loop.add_reader(self._fd, self._on_destroyed, loop)

    def _unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        # Under the lock, `loop` already out of _watching; on its thread.
        if not loop.is_closed():
            loop.remove_reader(self._fd)
        # A closed loop watches nothing: its waiters are nobody's to resolve.
        for other in [other for other in self._watching if other.is_closed()]:
            del self._watching[other]
        if not self._watching:
            os.close(self._fd)
            self._fd = -1

    def _on_destroyed(self, loop: asyncio.AbstractEventLoop) -> None:
        """The reader callback: destroy has finished."""
        with self._lock:
            self._done = True
            self._handle = None
            if loop not in self._watching:
                return  # a callback that was already on its way when the reader went
            futures = self._watching.pop(loop)
            self._unwatch(loop)
        runtime = self._own_runtime(loop)
        for future in futures:
            _resolve_destroyed(future, runtime)
            runtime = None  # drained once

    def _on_waiter_done(self, future: asyncio.Future[None]) -> None:
        # A cancelled waiter: once none of its loop's is pending, that loop
        # stops watching (destroy itself goes on).
        if not future.cancelled():
            return
        loop = future.get_loop()
        with self._lock:
            futures = self._watching.get(loop)
            if futures is None or not all(f.done() for f in futures):
                return
            del self._watching[loop]
            self._unwatch(loop)

    def __del__(self, _close: Any = os.close) -> None:
        # Only reachable once no open loop holds the reader callback.
        if self._fd >= 0:
            _close(self._fd)
            self._fd = -1


class Communicator:
    """Owns the native threads, sockets and connections of an aiocomm process.

    Use it as ``async with Communicator() as comm:``, or call
    ``await comm.destroy()`` when done. Created inside a running event loop,
    it binds to that loop; otherwise to the first loop that uses it.

    Options:
        io_threads: native I/O threads (sockets, framing, parsing).
        idle_timeout: seconds without receiving anything before a connection
            is closed; heartbeats are sent after half of it without sending.
        message_size_max: the largest message accepted, in bytes.
        connect_timeout: seconds to establish a connection.
        invocation_timeout: default seconds to wait for a reply (None: no limit).
        close_timeout: seconds a graceful close waits for the peer.
        read_timeout: seconds a started message may take to arrive in full.
        loop_reads: let the event loop read its connections' sockets itself
            while it is responsive: one thread wake-up less per message
            (lower latency, more calls per second), in exchange for the
            read system calls and parsing on the loop. The I/O threads read
            whenever the loop is blocked for more than about 20 ms. None
            (the default) means on, unless the environment variable
            ``AIOCOMM_LOOP_READS`` is ``0``. False: the I/O threads read
            everything (the loop does no socket reads at all). TLS
            connections are read the same way once their handshake, which
            always runs on the I/O threads, is done: the loop then decrypts
            what it reads.
        tls: an :class:`aiocomm.TLS` for ``ssl`` endpoints (certificates,
            trust anchors, verification). Without it, ``ssl`` proxies verify
            servers against the system's authorities, and ``ssl`` adapters
            cannot be created.
        locator: the proxy (or its string) of an ``Ice::Locator``, such as
            IceGrid's ``"IceGrid/Locator:tcp -h 127.0.0.1 -p 4061"``: proxies
            without endpoints (``hello@HelloAdapter``, ``hello``) resolve
            through it, and adapters with an ``adapter_id`` register with it.
            A locator request waits ``invocation_timeout`` at most, or
            ``connect_timeout`` when there is none.
        locator_cache_timeout: seconds a resolution is reused (``-1``: until
            a connection to what it resolved fails; ``0``: never).
    """

    def __init__(self, *, io_threads: int = 1, idle_timeout: float = 60.0,
                 message_size_max: int = 1 << 20, connect_timeout: float = 10.0,
                 invocation_timeout: float | None = None, close_timeout: float = 10.0,
                 read_timeout: float = 10.0, loop_reads: bool | None = None,
                 tls: TLS | None = None, locator: object = None,
                 locator_cache_timeout: float = -1) -> None:
        _check_int("io_threads", io_threads, 1, 256)
        _check_int("message_size_max", message_size_max, 64, (1 << 31) - 1)
        for name, value in (("idle_timeout", idle_timeout), ("connect_timeout", connect_timeout),
                            ("close_timeout", close_timeout), ("read_timeout", read_timeout)):
            _check_seconds(name, value)
        if invocation_timeout is not None:
            _check_seconds("invocation_timeout", invocation_timeout)
        if loop_reads is None:
            loop_reads = os.environ.get("AIOCOMM_LOOP_READS", "1") != "0"
        if not isinstance(loop_reads, bool):
            raise TypeError(f"loop_reads must be a bool, not {type(loop_reads).__name__}")
        if tls is not None and not isinstance(tls, TLS):
            raise TypeError(f"tls must be an aiocomm.TLS, not {type(tls).__name__}")
        if isinstance(locator_cache_timeout, bool) or not isinstance(locator_cache_timeout,
                                                                     int | float):
            raise TypeError("locator_cache_timeout must be a number of seconds, not "
                            f"{type(locator_cache_timeout).__name__}")
        if locator_cache_timeout < 0 and locator_cache_timeout != -1:
            raise ValueError("locator_cache_timeout must be -1 (forever), 0 (never) or "
                             f"positive, not {locator_cache_timeout}")
        self._options = {"io_threads": io_threads, "idle_timeout": idle_timeout,
                         "message_size_max": message_size_max,
                         "connect_timeout": connect_timeout,
                         "invocation_timeout": invocation_timeout,
                         "close_timeout": close_timeout, "read_timeout": read_timeout,
                         "loop_reads": loop_reads,
                         "locator_cache_timeout": locator_cache_timeout}
        self._inbox = _core.Inbox()
        handle = _core.Communicator(self._inbox, io_threads, message_size_max,
                                    float(idle_timeout), float(connect_timeout),
                                    float(close_timeout), float(read_timeout), loop_reads)
        if tls is not None:
            # Before the communicator exists: a configuration that does not
            # load leaves nothing to destroy (the handle's dealloc tears down).
            tls._apply(handle)
        self._handle = handle
        # What proxies and adapters read of this communicator (_channel.py).
        self._channel = channel = Channel(self, handle, self._inbox, invocation_timeout)
        self._adapters: list[ObjectAdapter] = []
        self._destroy: _DestroyCompletion | None = None
        self._shutdown = False
        self._shutdown_waiters: list[asyncio.Future[None]] = []
        self._source_traceback = traceback.extract_stack(limit=8)[:-1]
        channel.locators = LocatorClients(
            float(locator_cache_timeout), float(invocation_timeout or connect_timeout))
        self._clearing: asyncio.Task[Any] | None = None  # see _clear_registrations
        if locator is not None:
            channel.default_locator = channel.locators.client(channel, locator)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            channel.bind(loop)

    # ------------------------------------------------------------- loops

    def _destroy_begun(self) -> bool:
        return self._channel.destroy_begun()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this communicator is bound to (None until first use)."""
        return self._channel.loop

    # ----------------------------------------------------------- servers

    def create_object_adapter(self, endpoints: str = "tcp -h 127.0.0.1 -p 0", *,
                              name: str | None = None,
                              published_endpoints: str | None = None,
                              authorize: Callable[[Current], bool] | None = None,
                              adapter_id: str | None = None,
                              replica_group_id: str | None = None
                              ) -> ObjectAdapter:
        """Creates an object adapter listening on ``endpoints`` (bound at once; ``-p 0``
        picks a free port). Activate it to start dispatching.

        Proxies made by the adapter carry its published endpoints: by default
        the bound ones, with a wildcard host (``*``, ``0.0.0.0``) published as
        ``127.0.0.1``. A server that clients on other hosts reach gives
        ``published_endpoints`` (Ice's ``PublishedEndpoints``), e.g.
        ``"tcp -h server.example.com -p 0"``; ``-p 0`` there stands for the
        port the adapter bound (its first endpoint's).

        ``authorize(current) -> bool``, when given, is called before every
        dispatch (built-in operations included) with the request's
        :class:`~aiocomm.Current` (``current.tls`` says who is calling over
        TLS). ``True`` dispatches; ``False``, or raising
        :class:`~aiocomm.PermissionDeniedError`, refuses, and the caller gets
        ``PermissionDeniedError`` (reply status 9, Ice 3.8's ``Unauthorized``).
        It must answer at once (no ``async def``); a hook that raises
        anything else, or returns a non-bool, refuses too and is logged.

        ``adapter_id`` (with the communicator's ``locator``) registers the
        adapter: ``await adapter.activate()`` completes once the locator's
        registry has its published endpoints (``replica_group_id``: as one
        replica of that group), and the proxies the adapter makes are
        indirect (``name @ adapter_id``, or ``@ replica_group_id``)."""
        if not isinstance(endpoints, str):
            raise TypeError(f"endpoints must be a str, not {type(endpoints).__name__}")
        if published_endpoints is not None and not isinstance(published_endpoints, str):
            raise TypeError("published_endpoints must be a str or None, not "
                            f"{type(published_endpoints).__name__}")
        if authorize is not None and (not callable(authorize)
                                      or inspect.iscoroutinefunction(authorize)):
            raise TypeError("authorize must be a plain callable taking current and returning "
                            f"a bool, not {authorize!r}")
        for option, value in (("adapter_id", adapter_id), ("replica_group_id", replica_group_id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{option} must be a non-empty str or None, not {value!r}")
        if replica_group_id is not None and adapter_id is None:
            raise ValueError("a replica_group_id needs an adapter_id (each replica has its own)")
        if adapter_id is not None and self._channel.default_locator is None:
            raise ValueError("an adapter_id registers with a locator: create the communicator "
                             "with Communicator(locator=...)")
        runtime = self._channel.runtime_for_call()
        if self._shutdown:
            raise CommunicatorDestroyedError("the communicator has been shut down")
        parsed = parse_endpoints(endpoints)
        if any(e.secure for e in parsed):
            require_tls()
        publish_as = None if published_endpoints is None else parse_endpoints(published_endpoints)
        for endpoint in publish_as or ():
            if endpoint.host in ("*", "0.0.0.0", "::"):  # parse_endpoint gives "*" for none
                raise ProxyParseError("a published endpoint needs a host clients can reach, "
                                      f"not {endpoint.host!r}")
        core_ids: list[int] = []
        published: list[Endpoint] = []
        try:
            for endpoint in parsed:
                bind_host = "0.0.0.0" if endpoint.host in ("*", "") else endpoint.host
                try:
                    core_id, _bound_host, port = self._handle.create_adapter(
                        bind_host, endpoint.port, endpoint.secure)
                except _core.TLSConfigError as e:
                    raise ValueError(str(e)) from None
                core_ids.append(core_id)
                publish_host = "127.0.0.1" if bind_host == "0.0.0.0" else endpoint.host
                published.append(Endpoint(publish_host, port, endpoint.timeout_ms,
                                          endpoint.compress, endpoint.transport))
        except _core.DestroyedError:
            raise CommunicatorDestroyedError("the communicator has been destroyed") from None
        except BaseException:
            for core_id in core_ids:
                self._handle.deactivate_adapter(core_id)
            raise
        if publish_as is not None:
            port = published[0].port
            published = [e if e.port else dataclasses.replace(e, port=port) for e in publish_as]
        name = name or f"adapter-{next(_adapter_names)}"
        registration = None
        if adapter_id is not None and self._channel.default_locator is not None:
            registration = Registration(runtime.loop, self._channel.default_locator, adapter_id,
                                        replica_group_id, name)
        adapter = ObjectAdapter(self, self._channel, runtime, name, core_ids, tuple(published),
                                authorize, registration=registration)
        self._adapters.append(adapter)
        return adapter

    def reload_tls(self, tls: TLS) -> None:
        """Replaces the TLS configuration (certificates, trust anchors,
        verification): connections made or accepted from now on use it,
        established ones keep theirs. Raises ValueError when it does not load,
        and the old configuration stays."""
        if not isinstance(tls, TLS):
            raise TypeError(f"tls must be an aiocomm.TLS, not {type(tls).__name__}")
        if self._destroy_begun():
            raise CommunicatorDestroyedError("the communicator has been destroyed")
        tls._apply(self._handle)

    # ----------------------------------------------------------- clients

    def proxy(self, text: str) -> Proxy:
        """Parses a stringified proxy, such as ``"hello:tcp -h 127.0.0.1 -p 10000"``."""
        return parse(self._channel, text)

    @property
    def locator(self) -> Proxy | None:
        """The default locator's proxy (``Communicator(locator=...)``), if any."""
        locator = self._channel.default_locator
        return None if locator is None else locator.proxy

    # --------------------------------------------------------- lifecycle

    def shutdown(self) -> None:
        """Stops dispatching: every adapter stops accepting connections and requests and
        closes its connections once their dispatches have finished. Idempotent."""
        if self._shutdown:
            return
        self._shutdown = True
        for adapter in self._adapters:
            if not adapter.is_deactivated:
                adapter.deactivate()
        if not self._handle.destroying:
            self._handle.shutdown()
        self._wake_shutdown_waiters()

    async def wait_for_shutdown(self) -> None:
        """Returns once :meth:`shutdown` (or destroy) has happened and the dispatches
        in flight have finished."""
        runtime = self._channel.runtime
        if not self._shutdown:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._shutdown_waiters.append(waiter)
            await waiter
            runtime = self._channel.runtime
        if runtime is not None and not runtime.loop.is_closed():
            while runtime.in_flight and not runtime.closed:
                await runtime.wait_idle()

    def _wake_shutdown_waiters(self) -> None:
        waiters, self._shutdown_waiters = self._shutdown_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve_destroyed, waiter, None)

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    @property
    def is_destroyed(self) -> bool:
        """Destroy has finished: every native thread is joined. False while a
        destroy is in progress (``repr`` and ``stats()["destroying"]`` show it)."""
        return self._handle.destroyed

    def destroy(self) -> Awaitable[None]:
        """Destroys the communicator: shuts down, lets in-flight dispatches finish,
        fails outstanding invocations with CommunicatorDestroyedError, closes
        connections gracefully and joins every native thread.

        In a running loop, returns an awaitable; the work runs on a native
        thread and the loop keeps running. With no running loop, blocks
        (without the GIL) until done. Idempotent; safe from concurrent callers,
        from a servant, and after the loop closed.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is self._channel.loop and self._destroy is None:
            clearing = self._clear_registrations(loop)
            if clearing is not None:
                return clearing
        completion = self._start_destroy(loop)
        if loop is None:
            bound = self._channel.loop
            self._handle.destroy_blocking(
                wait_for_dispatches=bound is not None and bound.is_running()
                and not bound.is_closed())
            completion.mark_done()
            return _Completed()
        return completion.waiter(loop)

    def _clear_registrations(self, loop: asyncio.AbstractEventLoop
                             ) -> asyncio.Future[None] | None:
        """Before destroy proper, adapters registered with a locator clear their
        registration (for ``close_timeout`` at most), as deactivate does: else
        the registry would keep sending clients to endpoints that are gone.
        None when there is nothing to clear. Only on the bound loop: a
        blocking destroy cannot talk to the registry."""
        clearing = self._clearing
        if clearing is None:
            tasks = [task for adapter in self._adapters
                     if (task := adapter._clear_registration()) is not None]
            if not tasks:
                return None
            release_current_dispatch(self._handle)  # a servant destroying its communicator
            clearing = self._clearing = loop.create_task(
                asyncio.wait(tasks, timeout=self._options["close_timeout"]))
        elif clearing.done():
            return None
        # Each caller its own future (cancelling one cancels neither the
        # clearing nor the destroy that follows it).
        future: asyncio.Future[None] = loop.create_future()

        def destroy_now(_: object) -> None:
            waiter = self.destroy()
            if isinstance(waiter, asyncio.Future):
                waiter.add_done_callback(
                    lambda _: None if future.done() else future.set_result(None))
            elif not future.done():
                future.set_result(None)

        clearing.add_done_callback(destroy_now)
        return future

    def _start_destroy(self, loop: asyncio.AbstractEventLoop | None) -> _DestroyCompletion:
        release_current_dispatch(self._handle)
        if self._destroy is not None:
            return self._destroy
        completion = _DestroyCompletion(self._handle, self._channel.runtime)
        self._destroy = completion
        self._channel.closing = True
        self._shutdown = True
        for adapter in self._adapters:
            adapter._refuse_held()
        self._wake_shutdown_waiters()
        bound = self._channel.loop
        # Only the bound loop can finish dispatches: wait for them only when
        # destroy is awaited there (elsewhere, the loop may never run again).
        wait = bound is not None and loop is bound and not bound.is_closed()
        if not self._handle.begin_destroy(wait):
            completion.mark_done()
        return completion

    async def __aenter__(self) -> Communicator:
        if self._channel.runtime is None and self._destroy is None:
            self._channel.bind(asyncio.get_running_loop())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.destroy()

    def stats(self) -> dict[str, int]:
        """Counters that explain performance: wake-ups, syscalls, GIL takes, ..."""
        counters: dict[str, int] = dict(self._handle.stats())
        runtime = self._channel.runtime
        counters["pending_invocations"] = (
            len(runtime.pending) + runtime.inbox.pending() if runtime else 0)
        counters["native_dispatches"] = self._inbox.native_dispatches()
        counters["python_dispatches_in_flight"] = (
            runtime.in_flight + runtime.inbox.dispatching() if runtime else 0)
        destroyed = self.is_destroyed
        counters["destroying"] = int(self._destroy_begun() and not destroyed)
        counters["destroyed"] = int(destroyed)
        return counters

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)

    def __repr__(self) -> str:
        if self.is_destroyed:
            state = "destroyed"
        elif self._destroy_begun():
            state = "destroying"
        else:
            state = "shut down" if self._shutdown else "live"
        return f"<aiocomm.Communicator {state} at {id(self):#x}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        handle = getattr(self, "_handle", None)
        if handle is None or self._destroy_begun():
            return
        # Never destroyed: the native handle's dealloc tears it down (without the
        # GIL, never waiting for the loop); say so, as asyncio does for transports.
        where = "".join(traceback.format_list(self._source_traceback))
        _warn(f"unclosed {self!r}; call 'await comm.destroy()'. Created at:\n{where}",
              ResourceWarning, source=self)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value}")
