#!/usr/bin/python3
"""Reference ZeroC Ice 3.7 server for aiocomm interoperability tests.

Run with the system interpreter that has Debian's ``python3-zeroc-ice``::

    /usr/bin/python3 tests/interop/ice_peer_server.py \
        [--acm-timeout SECONDS] [--acm-heartbeat 0-3] [--acm-close 0-4]

It listens on ``tcp -h 127.0.0.1 -p 0``, prints ``READY <proxy>`` as its first
stdout line (the proxy of the identity ``test``), and serves until its stdin
is closed or it receives SIGTERM/SIGINT.

The servant is a dynamic-invocation servant (``Ice.BlobjectAsync``), so no
Slice compilation is needed. Payloads are encapsulation *contents*
(encoding 1.1), as in aiocomm. Behaviour by operation:

- ``echo``: returns the in-params unchanged
- ``fail_user``: user exception (reply status 1), payload ``FAILURE_PAYLOAD``
- ``fail_unknown``: plain Python exception -> UnknownException (status 7)
- ``fail_local``: Ice local exception -> UnknownLocalException (status 5)
- ``fail_unknown_user``: raises Ice.UnknownUserException (status 6)
- ``nope``: OperationNotExistException (status 4)
- ``count_oneway``: increments a counter (meant to be called oneway)
- ``get_count``: returns the counter as an int32
- ``reset_count``: sets the counter to 0
- ``sleep``: in-param int32 milliseconds; replies (empty) after that
- ``echo_context``: returns the request context as dictionary<string,string>,
  keys sorted
- ``get_mode``: returns the request's operation mode as one byte
- ``connection_count``: int32: distinct client connections that dispatched here
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


class EchoServant(Ice.BlobjectAsync):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._connections: set[str] = set()

    def ice_invoke(self, in_params: bytes, current: Any) -> Any:
        op = current.operation
        payload = decaps(in_params)
        if current.con is not None:  # None for collocated calls
            with self._lock:
                self._connections.add(str(current.con.toString()))

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
            # Any local exception that is not a RequestFailedException is
            # sent as UnknownLocalException (status 5).
            raise Ice.AlreadyRegisteredException(LOCAL_TEXT, "test")
        if op == "fail_unknown_user":
            raise Ice.UnknownUserException(UNKNOWN_USER_TEXT)
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
    parser = argparse.ArgumentParser(description="ZeroC Ice 3.7 peer server for aiocomm tests")
    parser.add_argument("--acm-timeout", type=int, help="Ice.ACM.Server.Timeout (seconds)")
    parser.add_argument(
        "--acm-heartbeat",
        type=int,
        help="Ice.ACM.Server.Heartbeat: 0 off, 1 on dispatch, 2 on idle, 3 always",
    )
    parser.add_argument(
        "--acm-close",
        type=int,
        help="Ice.ACM.Server.Close: 0 off, 1 on idle (graceful), 2 on invocation, "
        "3 on invocation and idle, 4 on idle (forceful)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    init_data = Ice.InitializationData()
    props = Ice.createProperties()
    props.setProperty("Ice.Warn.Connections", "0")
    props.setProperty("Ice.Warn.Dispatch", "0")
    props.setProperty("Ice.ThreadPool.Server.Size", "4")
    props.setProperty("Ice.ThreadPool.Server.SizeMax", "16")
    props.setProperty("Ice.ThreadPool.Client.Size", "2")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "4")
    # Ice.MessageSizeMax is deliberately left at its default (1024 KB).
    # Note (Ice 3.7): the server's own writes, heartbeats included, count as
    # activity, so with heartbeat 3 (always) Ice never closes an idle
    # connection; with heartbeat 0 and close 1 it closes one on which it has
    # read nothing for the timeout (client heartbeats prevent that).
    for name, value in (
        ("Timeout", args.acm_timeout),
        ("Heartbeat", args.acm_heartbeat),
        ("Close", args.acm_close),
    ):
        if value is not None:
            props.setProperty(f"Ice.ACM.Server.{name}", str(value))
    init_data.properties = props

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

    with Ice.initialize(init_data) as communicator:
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
