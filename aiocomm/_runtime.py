"""The loop-side half of a communicator.

The runtime drains the native inbox on the event loop, in one batch per
wake-up: replies complete their futures, requests call their servants. It
holds no reference to the :class:`~aiocomm.Communicator` (only a weak one to
the native handle), so the loop's reader callback never keeps a
communicator alive on its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import _core
from ._encoding import decode_string, encode_bool, encode_string, encode_string_seq
from .errors import (
    CommunicatorDestroyedError,
    ConnectionLostError,
    ConnectionRefusedError,
    ConnectTimeoutError,
    DispatchError,
    FacetNotExistError,
    InvocationTimeoutError,
    MessageSizeError,
    ObjectNotExistError,
    OperationNotExistError,
    ProtocolError,
    UnknownError,
    UnknownLocalError,
    UnknownUserError,
    UserError,
)
from .identity import Current, Identity, OperationMode

if TYPE_CHECKING:
    from .adapter import ObjectAdapter

__all__ = ["Runtime", "current_dispatch"]

logger = logging.getLogger("aiocomm")

# The dispatch the running code belongs to, so that destroy() called from a
# servant does not wait for the very dispatch that awaits it.
current_dispatch: contextvars.ContextVar[Current | None] = contextvars.ContextVar(
    "aiocomm_current_dispatch", default=None
)

_REPLY_OK, _REPLY_USER = 0, 1
_MODES = tuple(OperationMode)
_EAGER = sys.version_info >= (3, 12)

_FAILURES: dict[int, Callable[[str], BaseException]] = {
    1: ConnectionRefusedError,
    2: ConnectionLostError,
    3: ConnectTimeoutError,
    4: lambda text: CommunicatorDestroyedError(text or "the communicator has been destroyed"),
    5: ProtocolError,
}

_NOT_EXIST: dict[int, type[ObjectNotExistError | FacetNotExistError | OperationNotExistError]] = {
    2: ObjectNotExistError,
    3: FacetNotExistError,
    4: OperationNotExistError,
}

_UNKNOWN: dict[int, type[UnknownError]] = {
    5: UnknownLocalError,
    6: UnknownUserError,
    7: UnknownError,
}
_DESTROYED = "the communicator has been destroyed"


def reply_error(status: int, payload: bytes, detail: Any) -> BaseException:
    """The exception a caller sees for a reply with a non-OK status."""
    if status == _REPLY_USER:
        return UserError(payload)
    not_exist = _NOT_EXIST.get(status)
    if not_exist is not None:
        name, category, facet, operation = detail
        identity = Identity(name, category)
        what = {2: f"object '{identity}'", 3: f"facet '{facet}' of '{identity}'",
                4: f"operation '{operation}' of '{identity}'"}[status]
        return not_exist(f"{what} does not exist", identity=identity, facet=facet,
                         operation=operation)
    unknown = _UNKNOWN.get(status)
    if unknown is not None:
        return unknown(str(detail or ""))
    return DispatchError(str(detail or ""), status=status)


def failure_error(code: int, text: str) -> BaseException:
    make = _FAILURES.get(code)
    return make(text) if make is not None else ConnectionLostError(text)


def _builtin_ids(servant: object) -> list[str]:
    ids = list(getattr(servant, "type_ids", ()) or ())
    if "::Ice::Object" not in ids:
        ids.append("::Ice::Object")
    return ids


def _ice_ping(servant: object, params: bytes) -> bytes:
    return b""


def _ice_is_a(servant: object, params: bytes) -> bytes:
    return encode_bool(decode_string(params) in _builtin_ids(servant))


def _ice_id(servant: object, params: bytes) -> bytes:
    return encode_string(_builtin_ids(servant)[0])


def _ice_ids(servant: object, params: bytes) -> bytes:
    return encode_string_seq(sorted(_builtin_ids(servant)))


_BUILTINS: dict[str, Callable[[object, bytes], bytes]] = {
    "ice_ping": _ice_ping,
    "ice_isA": _ice_is_a,
    "ice_id": _ice_id,
    "ice_ids": _ice_ids,
}


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


class Runtime:
    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: _core.Inbox,
                 handle: _core.Communicator) -> None:
        self.loop = loop
        self.create_future = loop.create_future
        self.thread_id = threading.get_ident()  # the loop's thread: it binds while running
        self.inbox = inbox
        self.handle_ref = weakref.ref(handle)
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.adapters: dict[int, ObjectAdapter] = {}
        self.in_flight = 0
        self.idle_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        # Write coalescing: while a batch is open, sends queue natively and
        # one writev per connection flushes them at the end of the batch.
        self.batching = False
        self.reader_fd = inbox.fd
        self.sockets_fd = inbox.sockets_fd
        # The common request (a plain method of a servant registered on an
        # active adapter, returning bytes) is dispatched natively, during the
        # drain; the rest comes here. Adapters register while active.
        inbox.configure_dispatch(Current, current_dispatch, _MODES, self._finish_native)
        loop.add_reader(self.reader_fd, self.on_readable)
        loop.add_reader(self.sockets_fd, self.on_sockets_readable)

    # ------------------------------------------------------------ inbox

    def on_readable(self) -> None:
        # Replies computed during this drain leave together, after it.
        opened = not self.batching
        self.batching = True
        try:
            self._deliver(self.inbox.drain(self.handle_ref(), self._deliver))
        finally:
            if opened:
                self.batching = False
                handle = self.handle_ref()
                if handle is not None:
                    handle.flush_deferred()

    def defer(self) -> bool:
        """Whether a send now joins an open batch, which the end of this loop
        iteration flushes. The first send of an iteration opens the batch; it
        goes out at once when no reply is awaited (no added latency at low
        load), else it waits for the batch, so that the peer is woken once
        for the lot rather than once for it and again for the rest."""
        if self.batching:
            return True
        self.batching = True
        self.loop.call_soon(self._end_batch)
        return bool(self.pending) or self.inbox.pending() > 0

    def _end_batch(self) -> None:
        self.batching = False
        handle = self.handle_ref()
        if handle is not None:
            handle.flush_deferred()

    def _deliver(self, events: list[tuple[Any, ...]]) -> None:
        for event in events:
            kind = event[0]
            try:
                if kind == 0:
                    self._on_reply(event)
                elif kind == 1:
                    self._on_request(event)
                elif kind == 2:
                    self._on_failed(event[1], failure_error(event[2], event[3]), event[4])
                elif kind == 3:
                    self._on_sent(event[1], event[2])
                elif kind == 4:
                    logger.log(event[1], "%s", event[2])
                elif kind == 5:
                    self._on_closed(event[1])
            except Exception:
                # One bad event must not cost the others in the batch.
                logger.exception("aiocomm: error while delivering %r", event[:2])

    # Connections whose sockets the loop reads itself sit in a poller of
    # the inbox's: a reply then wakes the loop directly, not a native
    # thread that wakes the loop in turn. Native threads read instead while
    # the loop is blocked.

    def on_sockets_readable(self) -> None:
        handle = self.handle_ref()
        if handle is None:
            # The communicator is gone, and with it every socket; should one
            # remain, the poller would report it for ever.
            self.loop.remove_reader(self.sockets_fd)
            return
        handle.read_ready_sockets()
        self.on_readable()

    # Futures live natively (completed in the drain, no Python frame per
    # reply) unless they have a timeout: those stay here with their timer.
    # An event that ends an invocation carries its native future, or None.

    def _take(self, request_id: int, future: asyncio.Future[bytes] | None
              ) -> asyncio.Future[bytes] | None:
        if future is None:
            future = self.pending.pop(request_id, None)
            timer = self.timers.pop(request_id, None)
            if timer is not None:
                timer.cancel()
        return future

    def _on_reply(self, event: tuple[Any, ...]) -> None:
        _, request_id, status, payload, detail, future = event
        future = self._take(request_id, future)
        if future is None or future.done():
            return
        if status == _REPLY_OK:
            future.set_result(payload)
        else:
            future.set_exception(reply_error(status, payload, detail))

    def _on_failed(self, request_id: int, error: BaseException,
                   future: asyncio.Future[bytes] | None) -> None:
        future = self._take(request_id, future)
        if future is not None and not future.done():
            future.set_exception(error)

    def _on_sent(self, request_id: int, future: asyncio.Future[bytes] | None) -> None:
        future = self._take(request_id, future)
        if future is not None and not future.done():
            future.set_result(b"")

    def _on_closed(self, native_futures: list[asyncio.Future[bytes]]) -> None:
        if self.closed:
            return
        self.closed = True
        pending, self.pending = self.pending, {}
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        for future in [*pending.values(), *native_futures]:
            if not future.done():
                future.set_exception(CommunicatorDestroyedError(_DESTROYED))
        for adapter in list(self.adapters.values()):
            adapter._on_communicator_closed()
        self.adapters.clear()
        self._wake_idle_waiters()
        if not self.loop.is_closed():
            self.loop.remove_reader(self.reader_fd)
            self.loop.remove_reader(self.sockets_fd)

    # ------------------------------------------------------ invocations

    def invoke(self, handle: _core.Communicator, target: _core.Target, prefix: bytes,
               operation: str, mode: int, context: dict[str, str] | None, payload: Any,
               oneway: bool, idempotent: bool, timeout: float | None) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = self.loop.create_future()
        try:
            request_id, written = handle.invoke(target, prefix, operation, mode, context, payload,
                                                oneway, idempotent,
                                                self.batching or self.defer(),
                                                None if timeout is not None else future)
        except _core.DestroyedError:
            raise CommunicatorDestroyedError(_DESTROYED) from None
        except _core.MessageSizeError as error:
            raise MessageSizeError(str(error)) from None
        if written:
            future.set_result(b"")
        elif timeout is not None:
            self.pending[request_id] = future
            self.timers[request_id] = self.loop.call_later(timeout, self._on_timeout, request_id,
                                                           timeout)
        return future

    def _on_timeout(self, request_id: int, timeout: float) -> None:
        self.timers.pop(request_id, None)
        future = self.pending.pop(request_id, None)
        handle = self.handle_ref()
        if handle is not None and request_id > 0:
            handle.cancel(request_id)
        if future is not None and not future.done():
            future.set_exception(InvocationTimeoutError(f"no reply within {timeout:g} s"))

    # --------------------------------------------------------- dispatch

    def _on_request(self, event: tuple[Any, ...]) -> None:
        handle = self.handle_ref()
        if handle is None:
            return
        adapter = self.adapters.get(event[2])
        if adapter is None or adapter.is_deactivated:
            self._refuse(handle, event)
            return
        if not adapter.is_active:
            adapter._held.append(event)
            return
        self.dispatch(handle, adapter, event)

    def _refuse(self, handle: _core.Communicator, event: tuple[Any, ...]) -> None:
        """Answers a request that no live adapter will dispatch."""
        (_, connection_id, _, request_id, name, category, facet, operation, *_rest) = event
        if request_id:
            handle.reply_not_exist(connection_id, request_id, 2, name, category, facet, operation)
        else:
            handle.finish_dispatch(connection_id)

    def dispatch(self, handle: _core.Communicator, adapter: ObjectAdapter,
                 event: tuple[Any, ...]) -> None:
        (_, connection_id, _, request_id, name, category, facet, operation, mode, context,
         encoding, params) = event
        # An Identity is a tuple: the plain (name, category) finds it.
        servant = adapter._servants.get(((name, category), facet))
        if servant is None:
            servant = adapter._locate(Identity(name, category), facet)
            if servant is None:
                status = 3 if facet and adapter._locate(Identity(name, category), "") else 2
                if request_id:
                    handle.reply_not_exist(connection_id, request_id, status, name, category,
                                           facet, operation)
                else:
                    handle.finish_dispatch(connection_id)
                return
        builtin = _BUILTINS.get(operation)
        method: Callable[[bytes, Current], Any] | None = None
        if builtin is None:
            method = getattr(servant, "ice_invoke", None)
            if method is None and operation[:1] != "_":
                method = getattr(servant, operation, None)
            if method is None or not callable(method):
                if request_id:
                    handle.reply_not_exist(connection_id, request_id, 4, name, category, facet,
                                           operation)
                else:
                    handle.finish_dispatch(connection_id)
                return
        current = Current(adapter, name, category, facet, operation, _MODES[mode], context,
                          request_id, encoding, connection_id, handle)
        self.in_flight += 1
        adapter._in_flight += 1
        if method is None:
            try:
                result: Any = builtin(servant, params)  # type: ignore[misc]
            except Exception as exc:
                self._finish_error(handle, current, exc)
            else:
                self._finish_ok(handle, current, result)
            return
        token = current_dispatch.set(current)
        try:
            result = method(params, current)
            if self._started_async(handle, current, result):
                return
        except Exception as exc:
            self._finish_error(handle, current, exc)
            return
        finally:
            current_dispatch.reset(token)
        self._finish_ok(handle, current, result)

    def _started_async(self, handle: _core.Communicator, current: Current, result: Any) -> bool:
        """Runs an awaitable result as a task that replies when it is done."""
        if result is None or type(result) is bytes or not isinstance(result, Awaitable):
            return False
        coroutine = result if asyncio.iscoroutine(result) else _await(result)
        if _EAGER:
            asyncio.Task(self._run_async(handle, current, coroutine), loop=self.loop,
                         eager_start=True)  # type: ignore[call-arg]
        else:
            self.loop.create_task(self._run_async(handle, current, coroutine))
        return True

    def _finish_native(self, current: Current, result: Any, error: Exception | None) -> None:
        """Ends a dispatch whose servant the drain called natively but whose
        outcome is not plain bytes: a coroutine, an exception, a wrong type."""
        handle = current._handle
        self.in_flight += 1
        if current.adapter is not None:
            current.adapter._in_flight += 1
        if error is not None:
            self._finish_error(handle, current, error)
        elif not self._started_async(handle, current, result):
            self._finish_ok(handle, current, result)

    async def _run_async(self, handle: _core.Communicator, current: Current,
                         coroutine: Any) -> None:
        try:
            result = await coroutine
        except asyncio.CancelledError:
            self._finish_error(handle, current, UnknownLocalError("the dispatch was cancelled"),
                               log=False)
            raise
        except Exception as exc:
            self._finish_error(handle, current, exc)
        else:
            self._finish_ok(handle, current, result)

    def _finish_ok(self, handle: _core.Communicator, current: Current, result: Any) -> None:
        if result is None:
            result = b""
        elif type(result) is not bytes:
            if not isinstance(result, bytes | bytearray | memoryview):
                error = TypeError(f"servant operation {current.operation!r} returned "
                                  f"{type(result).__name__}; expected a bytes-like object or None")
                self._finish_error(handle, current, error)
                return
            if isinstance(result, memoryview) and not result.c_contiguous:
                result = result.tobytes()  # the wire takes one contiguous run
        try:
            if not current._released:
                if current.request_id:
                    handle.reply(current._connection_id, current.request_id, _REPLY_OK,
                                 current.encoding, result, self.batching or self.defer())
                else:
                    handle.finish_dispatch(current._connection_id)
        finally:
            self._dispatch_ended(current)

    def _finish_error(self, handle: _core.Communicator, current: Current, exc: BaseException,
                      *, log: bool = True) -> None:
        try:
            if current._released:
                return
            connection_id, request_id = current._connection_id, current.request_id
            if isinstance(exc, UserError):
                if request_id:
                    handle.reply(connection_id, request_id, _REPLY_USER, current.encoding,
                                 exc.payload, self.defer())
                else:
                    handle.finish_dispatch(connection_id)
                return
            if isinstance(exc, DispatchError) and exc.status in (2, 3, 4):
                text = None
            elif isinstance(exc, DispatchError):
                text = exc.message or str(exc)
            else:
                text = f"{type(exc).__name__}: {exc}"
                if log:
                    logger.error("servant raised while dispatching %r on %s", current.operation,
                                 current.identity, exc_info=exc)
            if not request_id:
                handle.finish_dispatch(connection_id)
            elif text is None:
                identity = current.identity
                handle.reply_not_exist(connection_id, request_id, exc.status,  # type: ignore[attr-defined]
                                       identity.name, identity.category, current.facet,
                                       current.operation)
            else:
                status = exc.status if isinstance(exc, DispatchError) and exc.status > 1 else 7
                handle.reply_message(connection_id, request_id, status, text)
        finally:
            self._dispatch_ended(current)

    def _dispatch_ended(self, current: Current) -> None:
        self.in_flight -= 1
        adapter = current.adapter
        if adapter is not None:
            adapter._in_flight -= 1
            if adapter._in_flight == 0:
                adapter._wake_idle_waiters()
        if self.in_flight == 0:
            self._wake_idle_waiters()

    def _wake_idle_waiters(self) -> None:
        waiters, self.idle_waiters = self.idle_waiters, []
        for waiter in waiters:
            _resolve(waiter, None)

    def wait_idle(self) -> asyncio.Future[None]:
        """A future that resolves once no dispatch is in flight."""
        future: asyncio.Future[None] = self.loop.create_future()
        if self.in_flight == 0 or self.closed:
            future.set_result(None)
        else:
            self.idle_waiters.append(future)
        return future


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
