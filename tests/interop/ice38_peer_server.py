#!/usr/bin/env python3
"""Reference ZeroC Ice 3.8 server for aiocomm interoperability tests.

Run with an interpreter that has ZeroC Ice 3.8 for Python (``zeroc-ice`` 3.8,
e.g. the venv ``.ci/ice38-peer.sh`` makes; see ``test_ice38_interop.py``)::

    python tests/interop/ice38_peer_server.py \
        [--idle-timeout SECONDS] [--enable-idle-check 0|1] [--inactivity-timeout SECONDS]

The options set ``Ice.Connection.Server.IdleTimeout``,
``Ice.Connection.Server.EnableIdleCheck`` and
``Ice.Connection.Server.InactivityTimeout`` (Ice 3.8's replacements for ACM).
With an idle timeout T, Ice 3.8 writes a heartbeat (validate connection) when
it has written nothing for T/2, and, with the idle check enabled, aborts a
connection on which it has read nothing for T.

It listens on ``tcp -h 127.0.0.1 -p 0``, prints ``READY <proxy>`` as its first
stdout line (the proxy of the identity ``test``), and serves until its stdin
is closed or it receives SIGTERM/SIGINT.

The servant is a dynamic-dispatch servant (``Ice.Blobject``; Ice 3.8 has no
``BlobjectAsync``: ``ice_invoke`` may return a future instead), so no Slice
compilation is needed. Payloads are encapsulation *contents* (encoding 1.1),
as in aiocomm. Behaviour by operation (the same as ``ice_peer_server.py``,
plus the connection bookkeeping and 3.8's extra reply statuses):

- ``echo``: returns the in-params unchanged
- ``fail_user``: user exception (reply status 1), payload ``FAILURE_PAYLOAD``
- ``fail_unknown``: plain Python exception -> UnknownException (status 7)
- ``fail_local``: Ice local exception -> UnknownLocalException (status 5)
- ``fail_unknown_user``: raises Ice.UnknownUserException (status 6)
- ``fail_status``: in-param int32 N; raises Ice.DispatchException(N) (status N,
  e.g. 8 InvalidData, 9 Unauthorized, 10 NotSupported, or any value up to 255)
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

import argparse
import os
import signal
import struct
import sys
import threading
from typing import Any

import Ice

TYPE_ID = "::Test::Echo"
TYPE_IDS = ["::Ice::Object", TYPE_ID]  # Ice answers ice_ids sorted
ENCODING = b"\x01\x01"

# Keep these in sync with ice38_peer_client.py and test_ice38_interop.py.
# A well-formed encoding-1.1 user exception ::Test::Failure { string reason; }
# in the sliced format: slice flags (type id string | slice size | last slice),
# type id, slice size (int, counts itself), members.
_REASON = b"\x0cfail_user ok"  # string "fail_user ok"
FAILURE_PAYLOAD = b"\x31" + b"\x0e::Test::Failure" + struct.pack("<i", 4 + len(_REASON)) + _REASON
UNKNOWN_TEXT = "fail_unknown: deliberate Python error"
LOCAL_TEXT = "fail_local"
UNKNOWN_USER_TEXT = "fail_unknown_user: deliberate"


# --- minimal encoding helpers -----------------------------------------------


def encaps(content: bytes) -> bytes:
    return struct.pack("<i", len(content) + 6) + ENCODING + content


def decaps(data: bytes) -> bytes:
    """Return the content of an encapsulation (header checked)."""
    if len(data) < 6:
        raise Ice.MarshalException("encapsulation too short")
    (size,) = struct.unpack_from("<i", data, 0)
    if size != len(data):
        raise Ice.MarshalException(f"bad encapsulation size {size} != {len(data)}")
    return bytes(data[6:])


def write_size(n: int) -> bytes:
    return bytes([n]) if n < 255 else b"\xff" + struct.pack("<i", n)


def write_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return write_size(len(raw)) + raw


def read_size(buf: bytes, pos: int) -> tuple[int, int]:
    if buf[pos] < 255:
        return buf[pos], pos + 1
    return struct.unpack_from("<i", buf, pos + 1)[0], pos + 5


def read_string(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_size(buf, pos)
    return buf[pos : pos + n].decode("utf-8"), pos + n


# --- servant ----------------------------------------------------------------


class EchoServant(Ice.Blobject):
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
        con.setCloseCallback(self._on_close)

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
            ids = b"".join(write_string(t) for t in TYPE_IDS)
            return True, encaps(write_size(len(TYPE_IDS)) + ids)
        if op == "fail_user":
            return False, encaps(FAILURE_PAYLOAD)
        if op == "fail_unknown":
            raise RuntimeError(UNKNOWN_TEXT)
        if op == "fail_local":
            # Any local exception that is not a DispatchException is sent as
            # UnknownLocalException (status 5).
            raise Ice.AlreadyRegisteredException("servant", "test", LOCAL_TEXT)
        if op == "fail_unknown_user":
            raise Ice.UnknownUserException(UNKNOWN_USER_TEXT)
        if op == "fail_status":
            (status,) = struct.unpack_from("<i", payload, 0)
            raise Ice.DispatchException(status, f"fail_status {status}")
        if op == "count_oneway":
            with self._lock:
                self._count += 1
            return True, encaps(b"")
        if op == "get_count":
            with self._lock:
                count = self._count
            return True, encaps(struct.pack("<i", count))
        if op == "reset_count":
            with self._lock:
                self._count = 0
            return True, encaps(b"")
        if op == "echo_context":
            items = sorted(current.ctx.items())
            body = write_size(len(items)) + b"".join(
                write_string(k) + write_string(v) for k, v in items
            )
            return True, encaps(body)
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
            body = write_size(len(reasons)) + b"".join(write_string(r) for r in reasons)
            return True, encaps(body)
        if op == "sleep":
            (ms,) = struct.unpack_from("<i", payload, 0)
            future: Any = Ice.Future()
            timer = threading.Timer(ms / 1000.0, future.set_result, args=((True, encaps(b"")),))
            timer.daemon = True
            timer.start()
            return future
        # "nope" and anything else.
        raise Ice.OperationNotExistException(current.id, current.facet, current.operation)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ZeroC Ice 3.8 peer server for aiocomm tests")
    parser.add_argument(
        "--idle-timeout", type=int, help="Ice.Connection.Server.IdleTimeout (seconds, default 60)"
    )
    parser.add_argument(
        "--enable-idle-check",
        type=int,
        choices=(0, 1),
        help="Ice.Connection.Server.EnableIdleCheck (default 1)",
    )
    parser.add_argument(
        "--inactivity-timeout",
        type=int,
        help="Ice.Connection.Server.InactivityTimeout (seconds, default 300)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    props = Ice.createProperties()
    props.setProperty("Ice.Warn.Connections", "0")
    props.setProperty("Ice.Warn.Dispatch", "0")
    props.setProperty("Ice.ThreadPool.Server.Size", "4")
    props.setProperty("Ice.ThreadPool.Server.SizeMax", "16")
    props.setProperty("Ice.ThreadPool.Client.Size", "2")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "4")
    # Ice.MessageSizeMax is deliberately left at its default (1024 KB).
    for name, value in (
        ("IdleTimeout", args.idle_timeout),
        ("EnableIdleCheck", args.enable_idle_check),
        ("InactivityTimeout", args.inactivity_timeout),
    ):
        if value is not None:
            props.setProperty(f"Ice.Connection.Server.{name}", str(value))
    init_data = Ice.InitializationData(properties=props)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    fd = sys.stdin.fileno()

    def watch_stdin() -> None:
        # os.read on the raw fd: no buffered-reader lock held by this daemon
        # thread, so interpreter shutdown after SIGTERM stays clean.
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        stop.set()

    with Ice.initialize(initData=init_data) as communicator:
        adapter = communicator.createObjectAdapterWithEndpoints("Test", "tcp -h 127.0.0.1 -p 0")
        adapter.add(EchoServant(), Ice.stringToIdentity("test"))
        adapter.activate()
        proxy = adapter.createProxy(Ice.stringToIdentity("test"))
        sys.stdout.write(f"READY {communicator.proxyToString(proxy)}\n")
        sys.stdout.flush()

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        while not stop.wait(0.5):
            pass
        communicator.shutdown()
        communicator.waitForShutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
