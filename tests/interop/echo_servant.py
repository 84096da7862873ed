"""The raw echo servant of the Ice peer servers, Ice 3.7 and Ice 3.8.

Runs in the peer's interpreter. It is a dynamic-dispatch servant, so no Slice
compilation is needed; payloads are encapsulation *contents* (encoding 1.1),
as in aiocomm. Behaviour by operation:

- ``echo``: returns the in-params unchanged
- ``fail_user``: user exception (reply status 1), payload ``FAILURE_PAYLOAD``
- ``fail_unknown``: plain Python exception -> UnknownException (status 7)
- ``fail_local``: Ice local exception -> UnknownLocalException (status 5)
- ``fail_unknown_user``: raises Ice.UnknownUserException (status 6)
- ``fail_status`` (Ice 3.8 only): in-param int32 N; raises
  Ice.DispatchException(N) (status N, e.g. 8 InvalidData, 9 Unauthorized,
  10 NotSupported, or any value up to 255)
- ``nope``: OperationNotExistException (status 4)
- ``count_oneway``: increments a counter (meant to be called oneway)
- ``get_count``: returns the counter as an int32
- ``reset_count``: sets the counter to 0
- ``sleep``: in-param int32 milliseconds; replies (empty) after that
- ``echo_context``: returns the request context as dictionary<string,string>,
  keys sorted
- ``get_mode``: returns the request's operation mode as one byte
- ``connection_count``: int32: distinct client connections that dispatched here
- ``closed_count``: int32: how many of those have closed since (any reason)
- ``close_reasons``: the reasons as sequence<string> (Ice exception text)
- ``ice_ping`` etc.: built-ins, type id ``::Test::Echo``

Any identity other than ``test`` gives ObjectNotExistException (status 2) and
any non-empty facet gives FacetNotExistException (status 3): the adapter only
knows ``test`` with the default facet.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import Ice
from ice_wire import (
    FAILURE_PAYLOAD,
    LOCAL_TEXT,
    TYPE_ID,
    TYPE_IDS,
    UNKNOWN_TEXT,
    UNKNOWN_USER_TEXT,
    encaps,
    read_string,
    write_context,
    write_string,
    write_strings,
)
from peer_serve import V38

# Ice 3.8 has no BlobjectAsync: a Blobject's ice_invoke may return a future.
_Blobject: Any = Ice.Blobject if V38 else Ice.BlobjectAsync


def decaps(data: bytes) -> bytes:
    """Return the content of an encapsulation (header checked)."""
    if len(data) < 6:
        raise Ice.MarshalException("encapsulation too short")
    (size,) = struct.unpack_from("<i", data, 0)
    if size != len(data):
        raise Ice.MarshalException(f"bad encapsulation size {size} != {len(data)}")
    return bytes(data[6:])


def local_exception() -> Exception:
    """Any local exception that is not a RequestFailedException (3.7) or a
    DispatchException (3.8) is sent as UnknownLocalException (status 5)."""
    if V38:
        return Ice.AlreadyRegisteredException("servant", "test", LOCAL_TEXT)
    return Ice.AlreadyRegisteredException(LOCAL_TEXT, "test")  # (kindOfObject, id)


class EchoServant(_Blobject):  # type: ignore[misc]
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._connections: set[str] = set()  # Connection.toString(): local and remote address
        self._close_reasons: list[str] = []

    def _on_close(self, con: Any) -> None:
        try:
            con.throwException()
            reason = "closed"
        except Exception as ex:  # the reason the connection closed
            reason = f"{type(ex).__name__}: {ex}"
        with self._lock:
            self._close_reasons.append(reason)

    def _track(self, con: Any) -> None:
        if con is None:  # collocated call
            return
        key = str(con.toString())
        with self._lock:
            if key in self._connections:
                return
            self._connections.add(key)
        # A lambda, not the bound method: Ice 3.7 accepts only a function.
        con.setCloseCallback(lambda closed: self._on_close(closed))

    def _count_of(self, op: str) -> int:
        """The counter after ``op``: count_oneway adds one, reset_count zeroes it."""
        with self._lock:
            if op == "count_oneway":
                self._count += 1
            elif op == "reset_count":
                self._count = 0
            return self._count

    def ice_invoke(self, in_params: bytes, current: Any) -> Any:
        op = current.operation
        payload = decaps(in_params)
        self._track(current.con)

        if op == "echo":
            return True, encaps(payload)
        if op == "ice_ping":
            return True, encaps(b"")
        if op == "ice_isA":
            type_id, _ = read_string(payload, 0)
            return True, encaps(b"\x01" if type_id in TYPE_IDS else b"\x00")
        if op == "ice_id":
            return True, encaps(write_string(TYPE_ID))
        if op == "ice_ids":
            return True, encaps(write_strings(TYPE_IDS))
        if op == "fail_user":
            return False, encaps(FAILURE_PAYLOAD)
        if op == "fail_unknown":
            raise RuntimeError(UNKNOWN_TEXT)
        if op == "fail_local":
            raise local_exception()
        if op == "fail_unknown_user":
            raise Ice.UnknownUserException(UNKNOWN_USER_TEXT)
        if op == "fail_status" and V38:  # Ice 3.7 has no DispatchException
            (status,) = struct.unpack_from("<i", payload, 0)
            raise Ice.DispatchException(status, f"fail_status {status}")
        if op in ("count_oneway", "reset_count"):
            self._count_of(op)
            return True, encaps(b"")
        if op == "get_count":
            return True, encaps(struct.pack("<i", self._count_of(op)))
        if op == "echo_context":
            return True, encaps(write_context(dict(current.ctx)))
        if op == "get_mode":
            return True, encaps(bytes([current.mode.value]))
        if op == "connection_count":
            with self._lock:
                n = len(self._connections)
            return True, encaps(struct.pack("<i", n))
        if op == "closed_count":
            with self._lock:
                n = len(self._close_reasons)
            return True, encaps(struct.pack("<i", n))
        if op == "close_reasons":
            with self._lock:
                reasons = list(self._close_reasons)
            return True, encaps(write_strings(reasons))
        if op == "sleep":
            (ms,) = struct.unpack_from("<i", payload, 0)
            future: Any = Ice.Future()
            timer = threading.Timer(ms / 1000.0, future.set_result, args=((True, encaps(b"")),))
            timer.daemon = True
            timer.start()
            return future
        # "nope" and anything else.
        raise Ice.OperationNotExistException(current.id, current.facet, current.operation)


def add_servants(adapter: Any) -> None:
    adapter.add(EchoServant(), Ice.stringToIdentity("test"))
