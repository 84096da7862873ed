"""The native core (private). Hand-written stubs: this is its whole surface."""

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

from typing_extensions import Buffer

class DestroyedError(RuntimeError): ...
class MessageSizeError(ValueError): ...
class TLSConfigError(ValueError): ...

TLS_AVAILABLE: bool

# The events a drain hands to Python (struct sequences, described as named tuples).
class ReplyEvent(NamedTuple):
    """A reply that ends an invocation (one whose future the inbox did not complete)."""

    request_id: int
    status: int
    payload: bytes
    detail: tuple[str, str, str, str] | str | None
    future: asyncio.Future[bytes] | None

class FailedEvent(NamedTuple):
    """An invocation that failed without a reply; ``code`` is core::ErrorCode."""

    request_id: int
    code: int
    text: str
    future: asyncio.Future[bytes] | None

class SentEvent(NamedTuple):
    """A queued oneway invocation, written."""

    request_id: int
    future: asyncio.Future[bytes] | None

class LogEvent(NamedTuple):
    level: int
    text: str

class ClosedEvent(NamedTuple):
    """The communicator is gone; nothing follows."""

    futures: list[asyncio.Future[bytes]]

Event: TypeAlias = ReplyEvent | FailedEvent | SentEvent | LogEvent | ClosedEvent

class Inbox:
    """The queue from native threads to the loop; ``fd`` becomes readable when it fills."""

    def __init__(self) -> None: ...
    @property
    def fd(self) -> int: ...
    @property
    def sockets_fd(self) -> int:
        """Readable while a socket the loop reads itself has input."""
    def drain(self, handle: Communicator | None,
              deliver: Callable[[list[Event]], None]) -> list[Event]:
        """Delivers every queued event, in order: successful replies complete the futures
        the inbox holds; every request is dispatched, held or refused here (``handle``
        sends their replies); the rest are returned, or handed to ``deliver`` before a
        request so that order is kept.
        """
    def configure_dispatch(self, current_type: type, current_var: Any, modes: tuple[Any, ...],
                           finish: Callable[[Any, Any, BaseException | None], None],
                           continued: Callable[[Any, Any, BaseException | None], None],
                           unauthorized: Callable[[Any, Any, BaseException | None], None],
                           flush_soon: Callable[[Communicator], None],
                           dispatching: set[Any], by_adapter: dict[Any, set[Any]],
                           idle_waiters: dict[Any, Any], wake_idle: Callable[[Any], None],
                           loop: asyncio.AbstractEventLoop, task_type: type,
                           current_task: Callable[[Any], Any],
                           enter_task: Callable[[Any, Any], None],
                           leave_task: Callable[[Any, Any], None]) -> None:
        """What a request's dispatch is made of: the Current class (its slots are filled
        directly), the context variable naming the running dispatch, the operation modes;
        the runtime's methods that end a dispatch whose result is not bytes, end a
        coroutine servant's task that suspended and did not end in bytes, answer a
        request the authorize hook refused, and arrange that queued replies leave with
        this loop iteration's batch; the runtime's sets of dispatches in flight (which a
        servant that suspends joins until it ends), who waits for them to empty and how
        to wake them; and asyncio's pieces a coroutine servant's task is made of."""
    def dispatch_started(self, current: Any) -> None:
        """``current`` is in flight: added to the sets given to configure_dispatch."""
    def dispatch_ended(self, current: Any) -> None:
        """``current`` has ended: removed, and who waits for its adapter (or for every
        dispatch) to be idle is woken. Both are idempotent."""
    def add_adapter(self, adapter_id: int, adapter: Any, servants: dict[Any, object],
                    defaults: dict[str, object], authorize: Any) -> None:
        """An adapter whose requests are held until activated: dispatched from ``servants``
        (and the default servants by category, ``defaults``), after ``authorize``."""
    def activate_adapters(self, adapter_ids: list[int], handle: Communicator | None) -> None:
        """Dispatch the held requests, in order, and every later one."""
    def deactivate_adapter(self, adapter_id: int, handle: Communicator | None) -> None:
        """Refuse the held requests (dropped without a handle) and every later one."""
    def refuse_held(self, adapter_id: int, handle: Communicator | None) -> None: ...
    def remove_adapter(self, adapter_id: int) -> None: ...
    def dispatching(self) -> int:
        """Servant calls the native dispatch has under way."""
    def native_dispatches(self) -> int:
        """Requests whose servant the native dispatch has called."""
    def pending(self) -> int: ...

class Continuation:
    """An ``async def`` servant's dispatch after its first step, and the stand-in for its
    task during that step (see cpp/binding/continuation.h)."""

    def send(self, value: Any) -> Any: ...
    def throw(self, error: BaseException) -> Any: ...
    def close(self) -> None: ...
    def cancel(self, msg: Any = None) -> bool: ...
    def cancelling(self) -> int: ...
    def uncancel(self) -> int: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def get_name(self) -> str: ...
    def get_coro(self) -> Any: ...

class Target:
    def __init__(self, key: str, endpoints: list[tuple[str, int, bool]]) -> None: ...
    @property
    def key(self) -> str: ...

class Communicator:
    def __init__(
        self,
        inbox: Inbox,
        io_threads: int,
        message_size_max: int,
        idle_timeout: float,
        connect_timeout: float,
        close_timeout: float,
        read_timeout: float,
        loop_reads: bool = False,
    ) -> None: ...
    def connection_tls(
        self, connection_id: int
    ) -> tuple[str, str, tuple[str, ...], bytes, str, str] | None: ...
    def create_adapter(
        self, host: str, port: int, secure: bool = False
    ) -> tuple[int, str, int]: ...
    def set_tls(self, certfile: str, keyfile: str, cafile: str, password: str, verify_peer: int,
                check_hostname: bool, min_version: str) -> None: ...
    def deactivate_adapter(self, adapter_id: int) -> None: ...
    def shutdown(self) -> None: ...
    def invoke(
        self,
        target: Target,
        identity_facet: bytes,
        operation: str,
        mode: int,
        context: dict[str, str] | None,
        params: Any,
        oneway: bool,
        idempotent: bool,
        defer: bool = False,
        future: Any = None,
    ) -> tuple[int, bool]: ...
    def call(
        self,
        target: Target,
        identity_facet: bytes,
        operation: str,
        mode: int,
        context: dict[str, str] | None,
        params: Any,
        idempotent: bool,
        defer: bool,
        create_future: Callable[[], Any],
    ) -> Any:
        """A twoway request whose future (made by ``create_future``) the inbox completes."""
    def read_ready_sockets(self) -> None:
        """Reads the connections whose sockets are ready (loop thread), into the inbox."""
    def flush_deferred(self) -> None:
        """Writes every connection's deferred sends (one writev each)."""
    def cancel(self, request_id: int) -> None: ...
    def reply(
        self,
        connection_id: int,
        request_id: int,
        status: int,
        encoding: tuple[int, int],
        payload: Any,
        defer: bool = False,
    ) -> None: ...
    def reply_not_exist(
        self,
        connection_id: int,
        request_id: int,
        status: int,
        name: str,
        category: str,
        facet: str,
        operation: str,
        defer: bool = False,
    ) -> None: ...
    def reply_message(
        self, connection_id: int, request_id: int, status: int, text: str, defer: bool = False
    ) -> None: ...
    def finish_dispatch(self, connection_id: int) -> None: ...
    def abandon_dispatch(self, connection_id: int) -> None: ...
    def connection_addresses(
        self, connection_id: int
    ) -> tuple[tuple[str, int], tuple[str, int]] | None: ...
    def begin_destroy(self, wait_for_dispatches: bool) -> bool:
        """Starts destroy on the lifecycle thread; False when it had already completed.
        Its end shows on ``destroyed_fd``."""
    def destroy_blocking(self, wait_for_dispatches: bool) -> None:
        """Starts destroy if needed and waits for its end, without the GIL."""
    def teardown(self) -> None: ...
    @property
    def destroying(self) -> bool:
        """Destroy has begun (it may still be in progress)."""
    @property
    def destroyed(self) -> bool:
        """Destroy has finished and every native thread is joined (joins the lifecycle
        thread, without the GIL, if nobody has yet)."""
    @property
    def destroyed_fd(self) -> int:
        """Becomes readable once destroy has completed and stays readable (never drained).
        Valid while this object lives: a watcher that may outlive it watches a dup."""
    def stats(self) -> dict[str, int]: ...

def teardown_all() -> None: ...
def encode_identity_facet(name: str, category: str, facet: str) -> bytes: ...
def native_gil_acquisitions() -> int: ...

class _Testing:
    """aiocomm._core._testing: test-only hooks."""

    @staticmethod
    def set_release_gil_on_dealloc(on: bool) -> None: ...
    @staticmethod
    def drop_when_native_thread_waits_for_gil(
        holder: list[object], timeout: float = 10.0
    ) -> None: ...
    @staticmethod
    def begin_destroy_taking_gil(
        handle: Communicator, callback: Callable[[], Any], wait_for_dispatches: bool = False
    ) -> bool:
        """Begins destroy with a completion that takes the GIL on the lifecycle thread
        (the counted way) and calls ``callback``."""
    @staticmethod
    def take_gil_on_native_thread(callback: Callable[[], Any]) -> bool:
        """Calls ``callback`` from a new native thread that takes the GIL the counted way;
        False (nothing ran) when the interpreter is finalizing."""

_testing: _Testing

# ---------------------------------------------------------------------------
# aiocomm._core.codec: the Ice encoding 1.1 codec over compiled type descriptors
# (the contract is /work/spec-codec.md). At run time `codec` is a submodule;
# it is stubbed as a class of nested classes and static methods so that this
# stays one stub file and `codec.Type` works in annotations.
#
# Additions to the spec: `value_class`'s compact_id defaults to -1; `proxy`'s
# wrap defaults to None; ClassType/ExceptionType expose `type_id`; Operation
# exposes `name`.
# Choices the spec leaves open (or where the codec is stricter than Ice):
# - fields are set with object.__setattr__ (PyObject_GenericSetAttr), so a
#   class's own __setattr__ (a frozen dataclass's) is not called;
# - an instance none of whose slices is known becomes configure()'s
#   unknown_value class (aiocomm.slice.UnknownSlicedValue) with its
#   unknown_type_id set, or MarshalError when none is configured; an unknown
#   class/exception in the compact format (no slice sizes) is MarshalError;
#   unknown slices are not kept;
# - optional tags must increase (Ice would skip a smaller one): MarshalError;
# - encoding a class graph deeper than 100 is ValueError (receivers refuse it);
# - Type.decode and every Operation.decode_* require the data to be used up.
class codec:  # a module at run time
    class Type:
        def encode(self, value: Any) -> bytes:
            """Encodes one value (classes in the compact format)."""
        def decode(self, data: Buffer, communicator: Any = None) -> Any:
            """Decodes exactly one value from ``data``; MarshalError otherwise."""

    class StructType(Type):
        def define(self, py_class: type, members: list[tuple[str, codec.Type]]) -> None: ...

    class ClassType:
        @property
        def type_id(self) -> str: ...
        def define(self, py_class: type, base: codec.ClassType | None,
                   members: list[tuple[str, codec.Type, int]]) -> None:
            """Own members in Slice order; tag -1 = required."""

    class ExceptionType:
        @property
        def type_id(self) -> str: ...
        def define(self, py_class: type, base: codec.ExceptionType | None,
                   members: list[tuple[str, codec.Type, int]]) -> None: ...

    class Operation:
        @property
        def name(self) -> str: ...
        def encode_in(self, args: tuple[Any, ...]) -> bytes: ...
        def decode_in(self, data: Buffer, communicator: Any) -> tuple[Any, ...]: ...
        def encode_out(self, result: Any) -> bytes: ...
        def decode_out(self, data: Buffer, communicator: Any) -> Any: ...
        def encode_exception(self, exc: BaseException) -> bytes: ...
        def decode_exception(self, data: Buffer, communicator: Any) -> BaseException: ...

    @staticmethod
    def configure(*, marshal_error: type[Exception], proxy_encode: Callable[[Any], bytes],
                  proxy_decode: Callable[..., Any], unknown_value: type | None = None) -> None: ...
    @staticmethod
    def builtin(name: str) -> codec.Type: ...
    @staticmethod
    def sequence(element: codec.Type) -> codec.Type: ...
    @staticmethod
    def dictionary(key: codec.Type, value: codec.Type) -> codec.Type: ...
    @staticmethod
    def enum(members: dict[int, Any]) -> codec.Type: ...
    @staticmethod
    def proxy(wrap: Callable[[Any], Any] | None = None) -> codec.Type: ...
    @staticmethod
    def struct(type_id: str) -> codec.StructType: ...
    @staticmethod
    def value_class(type_id: str, compact_id: int = -1) -> codec.ClassType: ...
    @staticmethod
    def class_ref(cls: codec.ClassType | None) -> codec.Type: ...
    @staticmethod
    def exception(type_id: str) -> codec.ExceptionType: ...
    @staticmethod
    def operation(name: str, in_params: list[tuple[codec.Type, int]],
                  out_params: list[tuple[codec.Type, int]],
                  return_type: tuple[codec.Type, int] | None,
                  exceptions: list[codec.ExceptionType], format: str | None) -> codec.Operation: ...
