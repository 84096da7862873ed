"""What code generated from Slice stands on: the base classes of typed
proxies, servants, classes and exceptions, and the configured codec.

Generated modules (``aiocomm.slice.load`` or ``python -m aiocomm.slice``)
import this module as ``_rt``; users rarely need it by name. It depends
downward only: on the proxy, the errors and the native codec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

from .. import _core, _proxy_wire
from ..errors import MarshalError, OperationNotExistError, UnknownUserError, UserError
from ..identity import Current
from ..proxy import Proxy

__all__ = ["ObjectPrx", "Op", "Servant", "UnknownSlicedValue", "UserException", "Value",
           "bind_operations", "codec",
           "configure_codec", "unimplemented"]

# The native codec (C++ over type descriptors). Typed as Any here: generated
# code builds its descriptors through this name, and the annotations users
# read are the generated ones, not the codec's.
codec: Any = _core.codec


def configure_codec() -> None:
    """Gives the codec aiocomm's MarshalError and proxy hooks (done at import;
    again by whoever configured it otherwise, as a codec test may)."""
    codec.configure(marshal_error=MarshalError, proxy_encode=_proxy_wire.encode,
                    proxy_decode=_proxy_wire.decode, unknown_value=UnknownSlicedValue)


OBJECT_ID = "::Ice::Object"


def _fields_text(obj: object, fields: Iterable[str]) -> str:
    return ", ".join(f"{name}={getattr(obj, name, None)!r}" for name in fields)


class Value:
    """Base of the classes generated from Slice ``class`` definitions (and Slice ``Value``)."""

    _ice_id: ClassVar[str] = "::Ice::Object"
    _ice_fields: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        # Graphs may be cyclic: show only this instance's own scalars' reprs
        # one level deep, never recursing into other class instances.
        def show(name: str) -> str:
            value = getattr(self, name, None)
            if isinstance(value, Value):
                return f"{name}=<{type(value).__name__} at {id(value):#x}>"
            return f"{name}={value!r}"

        return f"{type(self).__name__}({', '.join(show(n) for n in self._ice_fields)})"


class UnknownSlicedValue(Value):
    """A received class instance none of whose types this process knows (sent
    in the sliced format, where a receiver can skip what it does not know).

    It stands where the instance stood in the graph, so shared references and
    cycles keep their shape; ``unknown_type_id`` is its most derived Slice type
    id. Its data is not kept, so it cannot be sent on: encoding one is an error.
    """

    _ice_id: ClassVar[str] = "::Ice::UnknownSlicedValue"
    unknown_type_id: str

    def __init__(self, unknown_type_id: str = "") -> None:
        self.unknown_type_id = unknown_type_id

    def __repr__(self) -> str:
        return f"UnknownSlicedValue({self.unknown_type_id!r})"


configure_codec()


class UserException(UserError):
    """Base of the exceptions generated from Slice ``exception`` definitions.

    Keyword-constructed by the generated subclasses; the codec builds received
    ones without ``__init__``, so nothing here relies on it having run.
    """

    _ice_id: ClassVar[str] = ""
    _ice_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__(b"", self._ice_id)

    def __str__(self) -> str:
        return f"{self._ice_id}({_fields_text(self, self._ice_fields)})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_fields_text(self, self._ice_fields)})"


class Op:
    """One operation as a typed proxy sends it: the codec's ``Operation`` and
    what the codec leaves to the mapping (mode, declared exceptions)."""

    __slots__ = ("codec", "idempotent", "method", "name", "throws")

    def __init__(self, name: str, operation: Any, *, method: str | None = None,
                 idempotent: bool = False, throws: tuple[type[UserException], ...] = ()) -> None:
        self.name = name
        self.method = method or name  # a Python keyword is escaped: `from` is `_from`
        self.codec = operation
        self.idempotent = idempotent
        self.throws = throws


def _untyped(proxy: Proxy | ObjectPrx) -> Proxy:
    if isinstance(proxy, ObjectPrx):
        return proxy.proxy
    if isinstance(proxy, Proxy):
        return proxy
    raise TypeError(f"expected an aiocomm.Proxy or a typed proxy, not {type(proxy).__name__}")


class ObjectPrx:
    """Base of typed proxies: an :class:`aiocomm.Proxy` with typed operations."""

    __slots__ = ("_proxy",)
    _ice_id: ClassVar[str] = OBJECT_ID

    def __init__(self, proxy: Proxy | ObjectPrx) -> None:
        """Wraps ``proxy`` (untyped or typed) without asking the object what it is."""
        self._proxy = _untyped(proxy)

    @classmethod
    async def checked_cast(cls, proxy: Proxy | ObjectPrx, *,
                           timeout: float | None = None) -> Self | None:
        """``cls(proxy)`` if the object implements this interface (``ice_isA``), else None."""
        untyped = _untyped(proxy)
        if await untyped.ice_is_a(cls._ice_id, timeout=timeout):
            return cls(untyped)
        return None

    @property
    def proxy(self) -> Proxy:
        """The untyped proxy."""
        return self._proxy

    def with_timeout(self, timeout: float | None) -> Self:
        return type(self)(self._proxy.with_timeout(timeout))

    def with_context(self, context: Mapping[str, str] | None) -> Self:
        return type(self)(self._proxy.with_context(context))

    def oneway(self) -> Self:
        return type(self)(self._proxy.oneway())

    def twoway(self) -> Self:
        return type(self)(self._proxy.twoway())

    async def ice_ping(self, context: Mapping[str, str] | None = None) -> None:
        await self._proxy.ping(context=context)

    async def _ice_invoke(self, op: Op, args: tuple[Any, ...],
                          context: Mapping[str, str] | None) -> Any:
        """Encodes ``args``, sends them and decodes the reply (None when oneway).
        A user exception the operation does not declare is UnknownUserError."""
        proxy = self._proxy
        codec = op.codec
        payload = codec.encode_in(args)
        try:
            data = await proxy.invoke(op.name, payload, idempotent=op.idempotent,
                                      context=context)
        except UserError as error:
            if type(error) is not UserError:
                raise
            raise _received(op, error.payload, proxy) from None
        if not data and proxy.is_oneway:  # b"" (a twoway call without results too)
            return None
        return codec.decode_out(data, proxy.communicator)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectPrx):
            return NotImplemented
        return self._proxy == other._proxy

    def __hash__(self) -> int:
        return hash(self._proxy)

    def __str__(self) -> str:
        return str(self._proxy)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._proxy}>"


def _received(op: Op, payload: bytes, proxy: Proxy) -> BaseException:
    """The exception a caller sees for a user exception reply."""
    try:
        error = op.codec.decode_exception(payload, proxy.communicator)
    except MarshalError as exc:
        # No exception class of the reply is known here: not declared either.
        return UnknownUserError(f"undeclared user exception ({exc})")
    if isinstance(error, BaseException) and op.throws and isinstance(error, op.throws):
        return error
    return UnknownUserError(str(getattr(error, "_ice_id", type(error).__name__)))


class Servant:
    """Base of typed servants: a generated ``M.I`` class, subclassed by the user.

    ``_ice_operations`` maps each operation name (over every interface the
    class implements) to the codec's ``Operation``; the runtime dispatches
    through it. ``type_ids`` lists the interfaces, the most derived first.
    """

    type_ids: ClassVar[tuple[str, ...]] = (OBJECT_ID,)
    _ice_operations: ClassVar[dict[str, Any]] = {}
    _ice_throws: ClassVar[dict[str, tuple[type[UserException], ...]]] = {}
    _ice_methods: ClassVar[dict[str, str]] = {}  # operation -> method, where they differ

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A user's servant may implement several generated interfaces at once
        # (class S(A, B)): attribute lookup would see only A's operations and
        # ids, so the class gets the union, A's most derived id first.
        super().__init_subclass__(**kwargs)
        if "type_ids" not in cls.__dict__:
            ids: list[str] = []
            for base in cls.__mro__[1:]:
                ids.extend(t for t in base.__dict__.get("type_ids", ()) if t not in ids)
            ids.sort(key=lambda t: t == OBJECT_ID)  # stable: ::Ice::Object last
            cls.type_ids = tuple(ids)
        bind_operations(cls, ())


def bind_operations(cls: type[Servant], operations: Iterable[Op]) -> None:
    """Gives a generated servant class its operations, and those of its bases."""
    merged: dict[str, Any] = {}
    throws: dict[str, tuple[type[UserException], ...]] = {}
    methods: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):
        merged.update(getattr(base, "_ice_operations", {}))
        throws.update(getattr(base, "_ice_throws", {}))
        methods.update(getattr(base, "_ice_methods", {}))
    for op in operations:
        merged[op.name] = op.codec
        throws[op.name] = op.throws
        if op.method != op.name:
            methods[op.name] = op.method
    cls._ice_operations = merged
    cls._ice_throws = throws
    cls._ice_methods = methods


def unimplemented(current: Current) -> OperationNotExistError:
    """What a generated servant method raises when the subclass does not define it."""
    return OperationNotExistError(
        f"operation '{current.operation}' is not implemented", identity=current.identity,
        facet=current.facet, operation=current.operation)
