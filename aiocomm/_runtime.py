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
import functools
import inspect
import logging
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from . import _core
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
    PermissionDeniedError,
    ProtocolError,
    TLSError,
    UnknownError,
    UnknownLocalError,
    UnknownUserError,
    UserError,
)
from .identity import Current, Identity, OperationMode

__all__ = ["Runtime", "current_dispatch", "release_current_dispatch"]

logger = logging.getLogger("aiocomm")

# The dispatch the running code belongs to, so that destroy() called from a
# servant does not wait for the very dispatch that awaits it.
current_dispatch: contextvars.ContextVar[Current | None] = contextvars.ContextVar(
    "aiocomm_current_dispatch", default=None
)


def release_current_dispatch(handle: _core.Communicator) -> None:
    """Lets the running dispatch go, if it is one of ``handle``'s: a servant
    that destroys its own communicator must not be waited for by that destroy."""
    current = current_dispatch.get()
    if current is not None and current._handle is handle and not current._released:
        current._released = True
        handle.finish_dispatch(current._connection_id)


_REPLY_OK, _REPLY_USER = 0, 1
_MODES = tuple(OperationMode)
_EAGER = sys.version_info >= (3, 12)
# What a servant may raise that stops the program, as Python means it to,
# once its request is answered. Any other exception, BaseException or not,
# is answered and logged, and stops nothing.
_INTERRUPTS = (KeyboardInterrupt, SystemExit)

_FAILURES: dict[int, Callable[[str], BaseException]] = {
    1: ConnectionRefusedError,
    2: ConnectionLostError,
    3: ConnectTimeoutError,
    4: lambda text: CommunicatorDestroyedError(text or "the communicator has been destroyed"),
    5: ProtocolError,
    6: TLSError,
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
    if status == PermissionDeniedError.status:
        return PermissionDeniedError(str(detail or ""))
    return DispatchError(str(detail or ""), status=status)


def failure_error(code: int, text: str) -> BaseException:
    make = _FAILURES.get(code)
    return make(text) if make is not None else ConnectionLostError(text)


# Before 3.12, asyncio.current_task is a Python function over this dict; a
# continuation asks it twice per step (native_dispatch.cpp's take_step).
_CURRENT_TASKS = getattr(asyncio.tasks, "_current_tasks", None)
_CURRENT_TASK: Callable[[Any], Any] = (
    _CURRENT_TASKS.get if isinstance(_CURRENT_TASKS, dict)
    and inspect.isfunction(asyncio.tasks.current_task) else asyncio.tasks.current_task)


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
        # What to tell each adapter (by core id) when the communicator is gone.
        self.on_closed: dict[int, Callable[[], None]] = {}
        # Dispatches that called a servant and have not ended (see _answer),
        # all of them (key None) and by adapter; who waits for each to empty.
        self.dispatching: set[Current] = set()
        self.by_adapter: dict[object, set[Current]] = {}
        self.idle_waiters: dict[object, list[asyncio.Future[None]]] = {}
        self.closed = False
        # Write coalescing: while a batch is open, sends queue natively and
        # one writev per connection flushes them at the end of the batch.
        self.batching = False
        self.reader_fd = inbox.fd
        self.sockets_fd = inbox.sockets_fd
        # Every request is dispatched natively, during the drain
        # (native_dispatch.cpp); what does not end in a plain result comes
        # back here (_finish_native, _continued, _unauthorized). An `async
        # def` servant's first step runs there too, a stand-in for its task
        # (continuation.h); one that suspends joins `dispatching` (natively,
        # see in_flight.h) until it ends, and is continued natively.
        inbox.configure_dispatch(Current, current_dispatch, _MODES, self._finish_native,
                                 self._continued, self._unauthorized, self._flush_soon,
                                 self.dispatching, self.by_adapter, self.idle_waiters,
                                 self._wake_idle_waiters, loop, asyncio.Task, _CURRENT_TASK,
                                 asyncio.tasks._enter_task, asyncio.tasks._leave_task)
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

    def _deliver(self, events: list[_core.Event]) -> None:
        interrupt: BaseException | None = None
        for event in events:
            try:
                if isinstance(event, _core.ReplyEvent):
                    self._on_reply(event)
                elif isinstance(event, _core.FailedEvent):
                    self._on_failed(event.request_id, failure_error(event.code, event.text),
                                    event.future)
                elif isinstance(event, _core.SentEvent):
                    self._on_sent(event.request_id, event.future)
                elif isinstance(event, _core.LogEvent):
                    logger.log(event.level, "%s", event.text)
                else:
                    self._on_closed(event.futures)
            except Exception:
                # One bad event must not cost the others in the batch.
                logger.exception("aiocomm: error while delivering %r", event)
            except BaseException as exc:
                # KeyboardInterrupt or SystemExit (from a handler, or a signal):
                # it propagates once the batch is delivered.
                interrupt = interrupt or exc
        if interrupt is not None:
            raise interrupt

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

    def _on_reply(self, event: _core.ReplyEvent) -> None:
        future = self._take(event.request_id, event.future)
        if future is None or future.done():
            return
        if event.status == _REPLY_OK:
            future.set_result(event.payload)
        else:
            future.set_exception(reply_error(event.status, event.payload, event.detail))

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
        # Dispatches destroy stopped waiting for (close_timeout): their
        # connections are gone, and so are their replies.
        self.abandon(list(self.dispatching), "the communicator was destroyed", abort=False)
        on_closed, self.on_closed = self.on_closed, {}
        for callback in dict.fromkeys(on_closed.values()):
            callback()
        for key in list(self.idle_waiters):
            self._wake_idle_waiters(key)
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
    #
    # Every request that reaches Python ends in _answer, exactly once: one
    # reply (or, for a oneway, one finish of its native dispatch), whatever
    # the servant, its lookup, its adapter or the communicator does. A
    # dispatch that called a servant is also counted in `dispatching` from
    # its start to _dispatch_ended; both ends are idempotent, so a path that
    # reaches them twice (an eager task that re-raises KeyboardInterrupt
    # after it answered) cannot answer or uncount twice.

    @property
    def in_flight(self) -> int:
        return len(self.dispatching)

    # ---------------------------------------------------------- adapters
    #
    # The native dispatch keeps each adapter's state (holding, active,
    # deactivated) and the requests it holds; these say when it changes.
    # Requests answered outside a drain leave at once, else with its batch.

    def add_adapter(self, adapter: object, core_ids: list[int], servants: dict[Any, object],
                    defaults: dict[str, object], authorize: Any,
                    on_closed: Callable[[], None]) -> None:
        for core_id in core_ids:
            self.on_closed[core_id] = on_closed
            self.inbox.add_adapter(core_id, adapter, servants, defaults, authorize)

    def activate_adapter(self, core_ids: list[int]) -> None:
        """Starts dispatching, beginning with the requests held so far, in order.
        Raises only KeyboardInterrupt and SystemExit, once all were answered."""
        handle = self.handle_ref()
        opened = not self.batching
        self.batching = True
        try:
            self.inbox.activate_adapters(core_ids, handle)
        finally:
            if opened:
                self.batching = False
                if handle is not None:
                    handle.flush_deferred()

    def deactivate_adapter(self, core_ids: list[int], *, answer: bool = True) -> None:
        """Refuses the held requests (dropped unless `answer`) and every later one."""
        handle = self.handle_ref() if answer else None
        for core_id in core_ids:
            self.inbox.deactivate_adapter(core_id, handle)
        self._flush_unbatched(handle)

    def refuse_held(self, core_ids: list[int]) -> None:
        handle = self.handle_ref()
        for core_id in core_ids:
            self.inbox.refuse_held(core_id, handle)
        self._flush_unbatched(handle)

    def remove_adapter(self, core_ids: list[int]) -> None:
        for core_id in core_ids:
            self.on_closed.pop(core_id, None)
            self.inbox.remove_adapter(core_id)

    def _flush_unbatched(self, handle: _core.Communicator | None) -> None:
        if handle is not None and not self.batching:
            handle.flush_deferred()

    def _unauthorized(self, current: Current, verdict: Any, error: BaseException | None) -> None:
        """Answers a request the adapter's authorize hook did not allow (the
        native dispatch asked it) with PermissionDeniedError. Fails closed: a
        hook that raises something else, or returns anything but a bool,
        refuses and is logged, and the caller learns nothing of why."""
        adapter = current.adapter
        name = adapter.name if adapter is not None else None
        if isinstance(error, PermissionDeniedError):
            self._answer(current._handle, current, error=error)
            return
        if error is not None:
            logger.error("the authorize hook of adapter %r raised for %r on %s; refused",
                         name, current.operation, current.identity, exc_info=error)
        elif verdict is not False:
            if isinstance(verdict, Coroutine):
                verdict.close()  # never awaited: the hook must answer at once
            logger.error("the authorize hook of adapter %r returned %s, not a bool; refused",
                         name, type(verdict).__name__)
        self._answer(current._handle, current, error=PermissionDeniedError("not authorized"))

    def _settle(self, handle: _core.Communicator, current: Current, result: Any,
                error: BaseException | None) -> None:
        """Ends a started dispatch with what its servant call gave: a reply
        now, or a task that replies when the awaitable result is done. Raises
        only KeyboardInterrupt and SystemExit, after the request was answered."""
        if error is None:
            try:
                if self._started_async(handle, current, result):
                    return
            except BaseException as exc:  # an eager task re-raising KeyboardInterrupt
                error = exc
        self._finish(handle, current, result, error)
        if isinstance(error, _INTERRUPTS):
            raise error

    def _started_async(self, handle: _core.Communicator, current: Current, result: Any) -> bool:
        """Runs an awaitable result as a task that replies when it is done."""
        if result is None or type(result) is bytes or not isinstance(result, Awaitable):
            return False
        coroutine = result if asyncio.iscoroutine(result) else _await(result)
        if _EAGER:
            task = asyncio.Task(self._run_async(handle, current, coroutine), loop=self.loop,
                                eager_start=True)  # type: ignore[call-arg, unused-ignore]
        else:
            task = self.loop.create_task(self._run_async(handle, current, coroutine))
        if not task.done():
            # A task cancelled before its first step never runs _run_async's
            # handlers (asyncio.run cancels every task when the loop stops).
            task.add_done_callback(functools.partial(self._task_done, handle, current))
        return True

    def _task_done(self, handle: _core.Communicator, current: Current,
                   task: asyncio.Task[None]) -> None:
        self._finish(handle, current, error=UnknownLocalError("the dispatch was cancelled"),
                     log=False)

    def _finish_native(self, current: Current, result: Any, error: BaseException | None) -> None:
        """Ends a dispatch whose servant the drain called natively but whose
        outcome is not plain bytes: a coroutine, an exception, a wrong type.
        Raises only what is not an Exception, after the request was answered."""
        self._dispatch_started(current)
        self._settle(current._handle, current, result, error)

    def _continued(self, current: Current, result: Any, error: BaseException | None) -> None:
        """Ends a dispatch whose task suspended, once its servant has ended with what
        the native side does not answer (an exception, a wrong result), and sends the
        reply now, or with this loop iteration's batch. Never raises."""
        handle = current._handle
        if isinstance(error, asyncio.CancelledError):
            self._finish(handle, current, error=UnknownLocalError("the dispatch was cancelled"),
                         log=False)
        else:
            self._finish(handle, current, result, error)
        self._flush_soon(handle)

    def _flush_soon(self, handle: _core.Communicator) -> None:
        """Replies queued outside a drain leave now, or with this loop iteration's
        batch (the native side asks once per batch: flush_deferred ends it)."""
        if not self.batching and not self.defer():
            handle.flush_deferred()

    async def _run_async(self, handle: _core.Communicator, current: Current,
                         coroutine: Any) -> None:
        try:
            result = await coroutine
        except asyncio.CancelledError:
            self._finish(handle, current, error=UnknownLocalError("the dispatch was cancelled"),
                         log=False)
            raise
        except BaseException as exc:
            self._finish(handle, current, error=exc)
            if isinstance(exc, _INTERRUPTS):
                raise
        else:
            self._finish(handle, current, result)

    def _finish(self, handle: _core.Communicator, current: Current, result: Any = None,
                error: BaseException | None = None, *, log: bool = True) -> None:
        try:
            self._answer(handle, current, result, error, log=log)
        finally:
            self._dispatch_ended(current)

    def _answer(self, handle: _core.Communicator, current: Current, result: Any = None,
                error: BaseException | None = None, *, log: bool = True) -> None:
        """Decides a request's outcome and ends its native dispatch: the one
        place that does, once per request (``current._released`` says it is
        done, or that a servant let its dispatch go). Never raises."""
        if current._released:
            return
        current._released = True
        try:
            if error is None:
                try:
                    payload = _reply_payload(result, current.operation)
                except TypeError as exc:
                    error = exc
                else:
                    if current.request_id:
                        handle.reply(current._connection_id, current.request_id, _REPLY_OK,
                                     current.encoding, payload, self.batching or self.defer())
                    else:
                        handle.finish_dispatch(current._connection_id)
                    return
            self._answer_error(handle, current, error, log)
        except BaseException:
            # The reply could not be made (a servant's buffer that fails, no
            # memory): the request is still over, and the caller's connection
            # must not wait for it.
            logger.exception("aiocomm: could not reply to %r on %s", current.operation,
                             current.identity)
            handle.finish_dispatch(current._connection_id)

    def _answer_error(self, handle: _core.Communicator, current: Current, exc: BaseException,
                      log: bool) -> None:
        connection_id, request_id = current._connection_id, current.request_id
        if not request_id:
            if log and not isinstance(exc, DispatchError | UserError):
                logger.error("servant raised while dispatching oneway %r on %s",
                             current.operation, current.identity, exc_info=exc)
            handle.finish_dispatch(connection_id)
        elif isinstance(exc, UserError):
            handle.reply(connection_id, request_id, _REPLY_USER, current.encoding, exc.payload,
                         self.batching or self.defer())
        elif isinstance(exc, DispatchError) and exc.status in (2, 3, 4):
            handle.reply_not_exist(connection_id, request_id, exc.status, current._name,
                                   current._category, current.facet, current.operation)
        elif isinstance(exc, DispatchError):
            status = exc.status if exc.status > 1 else 7
            handle.reply_message(connection_id, request_id, status, exc.message or str(exc))
        else:
            if log:
                logger.error("servant raised while dispatching %r on %s", current.operation,
                             current.identity, exc_info=exc)
            handle.reply_message(connection_id, request_id, 7, f"{type(exc).__name__}: {exc}")

    def _dispatch_started(self, current: Current) -> None:
        # Natively, as a suspended continuation's (in_flight.h): one implementation.
        self.inbox.dispatch_started(current)

    def _dispatch_ended(self, current: Current) -> None:
        self.inbox.dispatch_ended(current)

    def dispatches_of(self, adapter: object) -> list[Current]:
        """The dispatches of `adapter` that called a servant and have not ended."""
        return list(self.by_adapter.get(adapter, ()))

    def abandon(self, dispatches: list[Current], why: str, *, abort: bool = True) -> None:
        """Gives up on dispatches that are still running: says which, drops
        their replies, and (with `abort`) aborts their connections: a graceful
        close would tell the callers that these requests were never dispatched."""
        handle = self.handle_ref() if abort else None
        for current in dispatches:
            logger.warning("aiocomm: %s; abandoning the dispatch of %r on %s (request %d)", why,
                           current.operation, current.identity, current.request_id)
            if not current._released:
                current._released = True
                if handle is not None:
                    handle.abandon_dispatch(current._connection_id)
            self._dispatch_ended(current)

    def _wake_idle_waiters(self, key: object) -> None:
        for waiter in self.idle_waiters.pop(key, ()):
            _resolve(waiter, None)

    def wait_idle(self, adapter: object = None) -> asyncio.Future[None]:
        """A future that resolves once no dispatch (of `adapter`, if given) is in flight."""
        future: asyncio.Future[None] = self.loop.create_future()
        busy = self.dispatching if adapter is None else self.by_adapter.get(adapter)
        if not busy or self.closed:
            future.set_result(None)
        else:
            self.idle_waiters.setdefault(adapter, []).append(future)
        return future


def _reply_payload(result: Any, operation: str) -> bytes | bytearray | memoryview:
    """What a servant's result puts on the wire; TypeError for what cannot go."""
    if result is None:
        return b""
    if type(result) is bytes:
        return result
    if not isinstance(result, bytes | bytearray | memoryview):
        raise TypeError(f"servant operation {operation!r} returned {type(result).__name__}; "
                        "expected a bytes-like object or None")
    if isinstance(result, memoryview) and not result.c_contiguous:
        return result.tobytes()  # the wire takes one contiguous run
    return result


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
