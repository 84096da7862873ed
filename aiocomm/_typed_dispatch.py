"""Dispatch to typed servants: classes generated from Slice (``aiocomm.slice``).

A typed servant's class carries ``_ice_operations`` (operation name -> the
codec's ``Operation``), ``_ice_throws`` (operation name -> the exception
classes it declares) and ``_ice_methods`` (operation name -> method name,
where a Python keyword made them differ). The dispatch
(cpp/binding/native_dispatch.cpp) decodes the parameters, calls the method
and encodes its result natively; it comes here for what is easier said in
Python: ``native_async`` (a coroutine method's result, encoded when it is
done), ``native_error`` (what a method raised) and ``undecodable``
(parameters that do not decode). A typed user exception leaves as a plain
:class:`~aiocomm.UserError` carrying its encoding, so that the runtime's
answer path stays the same; one the operation does not declare becomes
:class:`~aiocomm.UnknownUserError`, as Ice 3.8 servers do.

Depends on :mod:`aiocomm.errors` only (duck-typed over the codec's objects).
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any

from .errors import (
    MarshalError,
    UnknownLocalError,
    UnknownUserError,
    UserError,
)

__all__ = ["native_async", "native_error", "undecodable"]


def undecodable(name: str, error: BaseException) -> BaseException:
    """For the native dispatch: what is answered for parameters that do not decode.
    As Ice answers a request it cannot unmarshal: a local error of the server's."""
    if isinstance(error, MarshalError):
        return UnknownLocalError(f"cannot decode the parameters of {name!r}: {error}")
    return error


def native_async(result: Awaitable[Any], operation: Any, servant: object,
                 name: str) -> Coroutine[Any, Any, Any]:
    """For the native dispatch (cpp/binding/native_dispatch.cpp), which decoded the
    parameters and called the method: a coroutine of the encoded result of the
    awaitable the method returned, whose first step the drain runs."""
    coroutine = result if isinstance(result, Coroutine) else _await(result)
    return _finish_async(coroutine, operation, _declared(servant, name))


def native_error(error: BaseException, operation: Any, servant: object,
                 name: str) -> BaseException:
    """For the native dispatch: what is answered for what a typed method raised."""
    if isinstance(error, UserError):
        return _encoded(error, operation, _declared(servant, name))
    return error


def _declared(servant: object, name: str) -> tuple[type[BaseException], ...]:
    throws: Mapping[str, tuple[type[BaseException], ...]] = getattr(
        type(servant), "_ice_throws", {})
    return throws.get(name, ())


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _finish_async(coroutine: Coroutine[Any, Any, Any], operation: Any,
                        throws: tuple[type[BaseException], ...]) -> Any:
    try:
        result = await coroutine
    except UserError as exc:
        raise _encoded(exc, operation, throws) from None
    return operation.encode_out(result)


def _encoded(exc: UserError, operation: Any,
             throws: tuple[type[BaseException], ...]) -> BaseException:
    """What the answer path sends for a user exception a typed servant raised."""
    type_id = getattr(exc, "_ice_id", None)
    if type_id is None:
        return exc  # an untyped UserError: its payload is already the encoding
    if not isinstance(exc, throws):
        return UnknownUserError(str(type_id))
    return UserError(operation.encode_exception(exc), str(exc))
