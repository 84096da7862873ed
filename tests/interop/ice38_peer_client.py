#!/usr/bin/env python3
"""Reference ZeroC Ice 3.8 client for aiocomm interoperability tests.

Run with an interpreter that has ZeroC Ice 3.8 for Python (see
``test_ice38_interop.py``)::

    python tests/interop/ice38_peer_client.py PROXY SCENARIO \
        [--idle-timeout SECONDS] [--idle-seconds SECONDS] [--expect-reconnect]

PROXY is a stringified proxy of an aiocomm (or Ice) servant implementing the
test operations (see ``ice38_peer_server.py`` and ``test_ice38_interop.py``).
SCENARIO is one of ``echo``, ``builtins``, ``errors``, ``errors_local``
(reply statuses 5 and 6), ``errors_status`` (statuses 8, 9, 10 and 42 from a
``fail_status`` operation), ``oneway``, ``batch``, ``concurrent``, ``idle`` or
``all`` (echo, builtins, errors, oneway, batch, concurrent).

``--idle-timeout`` sets ``Ice.Connection.Client.IdleTimeout``: Ice 3.8 then
heartbeats after T/2 without writing and aborts the connection after T
without reading. The ``idle`` scenario calls ``echo``, leaves the connection
idle for ``--idle-seconds`` (default 6), calls ``echo`` again and checks the
connection survived (same ``Ice.Connection``, close callback never called);
with ``--expect-reconnect`` it checks the opposite (a negative control).

``concurrent`` uses Ice 3.8's asyncio integration: the communicator is bound
to an asyncio loop and 200 ``ice_invokeAsync`` calls are awaited together.

Prints exactly one JSON line on stdout: ``{"ok": true, "scenario": ...,
"checks": [...], "info": {...}, ...}``; exit status 0 on success. On any
mismatch it prints ``{"ok": false, "error": ...}``, the message on stderr too,
and exits 1. Usage errors exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import Ice

TYPE_ID = "::Test::Echo"
ENCODING = b"\x01\x01"

# Keep these in sync with ice38_peer_server.py and test_ice38_interop.py.
_REASON = b"\x0cfail_user ok"
FAILURE_PAYLOAD = b"\x31" + b"\x0e::Test::Failure" + struct.pack("<i", 4 + len(_REASON)) + _REASON
UNKNOWN_TEXT = "fail_unknown: deliberate Python error"
LOCAL_TEXT = "fail_local"
UNKNOWN_USER_TEXT = "fail_unknown_user: deliberate"
EXTRA_STATUSES = [8, 9, 10, 42]  # InvalidData, Unauthorized, NotSupported, a custom one

MIB = 1 << 20
# Just under Ice's default Ice.MessageSizeMax (1 MiB) including the message,
# request and reply headers.
NEAR_MAX = MIB - 1024
ECHO_SIZES = [0, 1, 16, 255, 256, 4096, 65536, 512 * 1024, NEAR_MAX]
INVOCATION_TIMEOUT_MS = 30000


class Mismatch(Exception):
    pass


def encaps(content: bytes) -> bytes:
    return struct.pack("<i", len(content) + 6) + ENCODING + content


def decaps(data: bytes) -> bytes:
    if len(data) < 6:
        raise Mismatch(f"encapsulation too short: {data[:16]!r}")
    (size,) = struct.unpack_from("<i", data, 0)
    if size != len(data):
        raise Mismatch(f"encapsulation size {size}, but {len(data)} bytes")
    if data[4:6] != ENCODING:
        raise Mismatch(f"encapsulation encoding {data[4:6]!r}, expected 1.1")
    return bytes(data[6:])


def pattern(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (catches offset bugs)."""
    block = bytes((i * 31 + seed * 7 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (n // len(block) + 1))[:n]


def check(cond: bool, message: str) -> None:
    if not cond:
        raise Mismatch(message)


def invoke(
    prx: Any, op: str, payload: bytes = b"", ctx: dict[str, str] | None = None, mode: Any = None
) -> tuple[bool, bytes]:
    if mode is None:
        mode = Ice.OperationMode.Normal
    ok, out = prx.ice_invoke(op, mode, encaps(payload), ctx)
    return ok, bytes(out)


def invoke_ok(prx: Any, op: str, payload: bytes = b"", **kw: Any) -> bytes:
    ok, out = invoke(prx, op, payload, **kw)
    check(ok, f"{op}: unexpected user exception {out[:64]!r}")
    return decaps(out)


def expect_raise(exc_type: type[BaseException], fn: Callable[[], Any], what: str) -> Any:
    try:
        result = fn()
    except exc_type as ex:
        if type(ex) is not exc_type:
            raise Mismatch(
                f"{what}: expected exactly {exc_type.__name__}, got {type(ex).__name__}: {ex}"
            ) from ex
        return ex
    except Exception as ex:
        raise Mismatch(
            f"{what}: expected {exc_type.__name__}, got {type(ex).__name__}: {ex}"
        ) from ex
    raise Mismatch(f"{what}: expected {exc_type.__name__}, got result {result!r}")


def with_identity(prx: Any, name: str) -> Any:
    return prx.ice_identity(Ice.stringToIdentity(name))


class Context:
    """What a scenario gets: the proxy, the options, and where to record results."""

    def __init__(
        self,
        communicator: Any,
        prx: Any,
        args: argparse.Namespace,
        checks: list[str],
        info: dict[str, Any],
    ) -> None:
        self.communicator = communicator
        self.prx = prx
        self.args = args
        self.checks = checks
        self.info = info


# --- scenarios --------------------------------------------------------------


def scenario_echo(c: Context) -> None:
    prx = c.prx
    for size in ECHO_SIZES:
        data = pattern(size, size)
        out = invoke_ok(prx, "echo", data)
        if out != data:
            diff = next(
                (i for i, (a, b) in enumerate(zip(out, data, strict=False)) if a != b), "end"
            )
            raise Mismatch(f"echo of {size} bytes returned {len(out)} bytes (first diff at {diff})")
        c.checks.append(f"echo_{size}")
    # Request context and idempotent mode must be parsed (and not corrupt the params).
    data = b"with-context"
    out = invoke_ok(prx, "echo", data, ctx={"k": "v", "empty": "", "\u00e9": "\u00fc" * 300})
    check(out == data, f"echo with context returned {out!r}")
    c.checks.append("echo_context")
    out = invoke_ok(prx, "echo", data, mode=Ice.OperationMode.Idempotent)
    check(out == data, f"idempotent echo returned {out!r}")
    c.checks.append("echo_idempotent")
    c.info["echo_sizes"] = ECHO_SIZES


def scenario_builtins(c: Context) -> None:
    prx = c.prx
    prx.ice_ping()
    c.checks.append("ice_ping")
    check(prx.ice_isA(TYPE_ID) is True, f"ice_isA({TYPE_ID}) is not True")
    check(prx.ice_isA("::Ice::Object") is True, "ice_isA(::Ice::Object) is not True")
    check(prx.ice_isA("::Test::Other") is False, "ice_isA(::Test::Other) is not False")
    c.checks.append("ice_isA")
    type_id = prx.ice_id()
    check(type_id == TYPE_ID, f"ice_id() = {type_id!r}")
    c.checks.append("ice_id")
    ids = list(prx.ice_ids())
    check(set(ids) == {"::Ice::Object", TYPE_ID} and len(ids) == 2, f"ice_ids() = {ids!r}")
    c.checks.append("ice_ids")
    c.info["ice_ids"] = ids
    # Built-ins via dynamic invocation too (raw bytes).
    out = invoke_ok(prx, "ice_isA", b"\x0c" + TYPE_ID.encode(), mode=Ice.OperationMode.Idempotent)
    check(out == b"\x01", f"raw ice_isA returned {out!r}")
    out = invoke_ok(prx, "ice_id", mode=Ice.OperationMode.Idempotent)
    check(out == b"\x0c" + TYPE_ID.encode(), f"raw ice_id returned {out!r}")
    c.checks.append("raw_builtins")
    missing = with_identity(prx, "missing")
    ex = expect_raise(Ice.ObjectNotExistException, missing.ice_ping, "ice_ping on missing")
    check(ex.id.name == "missing" and ex.operation == "ice_ping", f"ObjectNotExist fields: {ex}")
    c.checks.append("ice_ping_missing")


def scenario_errors(c: Context) -> None:
    prx = c.prx
    # 1: user exception, payload passed through unchanged.
    ok, out = invoke(prx, "fail_user", b"")
    check(not ok, f"fail_user: expected a user exception, got ok {out[:64]!r}")
    check(
        decaps(out) == FAILURE_PAYLOAD, f"fail_user payload {decaps(out)!r} != {FAILURE_PAYLOAD!r}"
    )
    c.checks.append("status1_user")

    # 2: object does not exist.
    missing = with_identity(prx, "missing")
    ex = expect_raise(
        Ice.ObjectNotExistException, lambda: invoke(missing, "echo", b"x"), "echo on missing"
    )
    check(
        ex.id.name == "missing"
        and ex.id.category == ""
        and ex.facet == ""
        and ex.operation == "echo"
        and ex.replyStatus == 2,
        f"ObjectNotExist fields: id={ex.id!r} facet={ex.facet!r} op={ex.operation!r}",
    )
    c.checks.append("status2_object_not_exist")

    # 3: facet does not exist.
    faceted = prx.ice_facet("nosuch")
    ex = expect_raise(
        Ice.FacetNotExistException, lambda: invoke(faceted, "echo", b"x"), "echo on facet"
    )
    check(
        ex.id.name == prx.ice_getIdentity().name
        and ex.facet == "nosuch"
        and ex.operation == "echo"
        and ex.replyStatus == 3,
        f"FacetNotExist fields: id={ex.id!r} facet={ex.facet!r} op={ex.operation!r}",
    )
    c.checks.append("status3_facet_not_exist")

    # 4: operation does not exist.
    ex = expect_raise(Ice.OperationNotExistException, lambda: invoke(prx, "nope", b""), "nope")
    check(
        ex.operation == "nope" and ex.id.name == prx.ice_getIdentity().name,
        f"OperationNotExist fields: id={ex.id!r} facet={ex.facet!r} op={ex.operation!r}",
    )
    c.checks.append("status4_operation_not_exist")

    # 7: unknown exception, carrying the servant's text.
    ex = expect_raise(
        Ice.UnknownException, lambda: invoke(prx, "fail_unknown", b""), "fail_unknown"
    )
    check(UNKNOWN_TEXT in str(ex), f"UnknownException text {str(ex)!r} lacks {UNKNOWN_TEXT!r}")
    check(ex.replyStatus == 7, f"UnknownException replyStatus {ex.replyStatus}")
    c.checks.append("status7_unknown")
    c.info["unknown_text"] = str(ex)

    # The connection is still usable after all of these.
    check(invoke_ok(prx, "echo", b"after-errors") == b"after-errors", "echo after errors failed")
    c.checks.append("echo_after_errors")


def scenario_errors_local(c: Context) -> None:
    prx = c.prx
    ex = expect_raise(
        Ice.UnknownLocalException, lambda: invoke(prx, "fail_local", b""), "fail_local"
    )
    check(LOCAL_TEXT in str(ex), f"UnknownLocalException text {str(ex)!r} lacks {LOCAL_TEXT!r}")
    c.checks.append("status5_unknown_local")
    ex = expect_raise(
        Ice.UnknownUserException, lambda: invoke(prx, "fail_unknown_user", b""), "fail_unknown_user"
    )
    check(
        UNKNOWN_USER_TEXT in str(ex),
        f"UnknownUserException text {str(ex)!r} lacks {UNKNOWN_USER_TEXT!r}",
    )
    c.checks.append("status6_unknown_user")


def scenario_errors_status(c: Context) -> None:
    """Reply statuses above 7 (new names in Ice 3.8; any byte value is legal)."""
    texts: dict[str, str] = {}
    for status in EXTRA_STATUSES:
        ex = expect_raise(
            Ice.DispatchException,
            lambda s=status: invoke(c.prx, "fail_status", struct.pack("<i", s)),
            f"fail_status {status}",
        )
        check(ex.replyStatus == status, f"fail_status {status}: replyStatus {ex.replyStatus}")
        check(f"fail_status {status}" in str(ex), f"fail_status {status}: text {str(ex)!r}")
        texts[str(status)] = str(ex)
        c.checks.append(f"status{status}_dispatch")
    c.info["status_texts"] = texts
    check(invoke_ok(c.prx, "echo", b"after") == b"after", "echo after statuses failed")


def scenario_unauthorized(c: Context) -> None:
    """An aiocomm adapter whose authorize hook refuses "echo" (and allows the rest)."""
    ex = expect_raise(Ice.DispatchException, lambda: invoke(c.prx, "echo", b"x"), "echo refused")
    check(ex.replyStatus == Ice.ReplyStatus.Unauthorized.value,
          f"refused echo: replyStatus {ex.replyStatus}")
    c.info["unauthorized_text"] = str(ex)
    c.checks.append("status9_unauthorized")
    check(invoke_ok(c.prx, "get_count") is not None, "an allowed call after the refusal failed")


def _get_count(prx: Any) -> int:
    out = invoke_ok(prx, "get_count")
    check(len(out) == 4, f"get_count returned {out!r}")
    return int(struct.unpack("<i", out)[0])


def _wait_count(prx: Any, expected: int, what: str) -> None:
    deadline = time.monotonic() + 15.0
    count = _get_count(prx)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.02)
        count = _get_count(prx)
    check(count == expected, f"{what}: count {count}, expected {expected}")


def scenario_oneway(c: Context) -> None:
    n = 100
    base = _get_count(c.prx)
    oneway = c.prx.ice_oneway()
    for _ in range(n):
        ok, _ = invoke(oneway, "count_oneway")
        check(ok, "oneway invoke returned not ok")
    _wait_count(c.prx, base + n, "oneway")
    c.checks.append(f"oneway_{n}")


def scenario_batch(c: Context) -> None:
    n = 50
    base = _get_count(c.prx)
    batch = c.prx.ice_batchOneway()
    for _ in range(n):
        invoke(batch, "count_oneway")
    batch.ice_flushBatchRequests()
    _wait_count(c.prx, base + n, "batch oneway")
    c.checks.append(f"batch_oneway_{n}")


async def scenario_concurrent(c: Context) -> None:
    prx = c.prx
    n = 200
    payloads = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(n)]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(prx.ice_invokeAsync("echo", Ice.OperationMode.Normal, encaps(p)) for p in payloads)
        ),
        timeout=INVOCATION_TIMEOUT_MS / 1000.0,
    )
    for i, ((ok, out), expected) in enumerate(zip(results, payloads, strict=True)):
        check(ok, f"concurrent echo {i}: user exception")
        check(decaps(bytes(out)) == expected, f"concurrent echo {i}: wrong result")
    c.checks.append(f"concurrent_echo_{n}")

    # Dispatches overlap: 20 sleeps of 250 ms take far less than 5 s.
    k, ms = 20, 250
    start = time.monotonic()
    sleep_arg = encaps(struct.pack("<i", ms))
    results = await asyncio.wait_for(
        asyncio.gather(
            *(prx.ice_invokeAsync("sleep", Ice.OperationMode.Normal, sleep_arg) for _ in range(k))
        ),
        timeout=INVOCATION_TIMEOUT_MS / 1000.0,
    )
    for ok, out in results:
        check(ok and decaps(bytes(out)) == b"", f"sleep returned {(ok, out)!r}")
    elapsed = time.monotonic() - start
    c.info["concurrent_sleep_seconds"] = round(elapsed, 3)
    check(elapsed < k * ms / 1000.0 / 2, f"{k} concurrent sleeps of {ms} ms took {elapsed:.2f} s")
    c.checks.append(f"concurrent_sleep_{k}")


def scenario_idle(c: Context) -> None:
    prx = c.prx
    idle_seconds = c.args.idle_seconds
    check(invoke_ok(prx, "echo", b"before-idle") == b"before-idle", "echo before idle")
    con = prx.ice_getConnection()
    check(con is not None, "no connection")
    first = str(con.toString())
    closed = threading.Event()
    reasons: list[str] = []

    def on_close(closed_con: Any) -> None:
        try:
            closed_con.throwException()
            reasons.append("closed")
        except Exception as ex:
            reasons.append(f"{type(ex).__name__}: {ex}")
        closed.set()

    con.setCloseCallback(on_close)
    closed_at = None
    start = time.monotonic()
    if closed.wait(idle_seconds):
        closed_at = round(time.monotonic() - start, 3)
        remaining = idle_seconds - (time.monotonic() - start)
        if remaining > 0:
            time.sleep(remaining)
    check(invoke_ok(prx, "echo", b"after-idle") == b"after-idle", "echo after idle")
    second = str(prx.ice_getConnection().toString())
    same = second == first and not closed.is_set()
    c.info.update(
        idle_seconds=idle_seconds,
        idle_timeout=c.communicator.getProperties().getIceProperty(
            "Ice.Connection.Client.IdleTimeout"
        ),
        same_connection=same,
        close_reasons=list(reasons),
        closed_after_seconds=closed_at,
        connection_before=first,
        connection_after=second,
    )
    if c.args.expect_reconnect:
        check(not same, f"the connection survived {idle_seconds} s idle ({first})")
        c.checks.append("idle_reconnected")
    else:
        check(
            same,
            f"the connection did not survive {idle_seconds} s idle: closed after {closed_at} s "
            f"({'; '.join(reasons) or 'no close callback'}); before {first!r}, after {second!r}",
        )
        c.checks.append("idle_same_connection")


SCENARIOS: dict[str, Callable[[Context], Any]] = {
    "echo": scenario_echo,
    "builtins": scenario_builtins,
    "errors": scenario_errors,
    "errors_local": scenario_errors_local,
    "errors_status": scenario_errors_status,
    "unauthorized": scenario_unauthorized,
    "oneway": scenario_oneway,
    "batch": scenario_batch,
    "concurrent": scenario_concurrent,
    "idle": scenario_idle,
}
ALL = ["echo", "builtins", "errors", "oneway", "batch", "concurrent"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ZeroC Ice 3.8 peer client for aiocomm tests")
    parser.add_argument("proxy")
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument(
        "--idle-timeout", type=int, help="Ice.Connection.Client.IdleTimeout (seconds, default 60)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=6.0, help="how long 'idle' leaves the connection idle"
    )
    parser.add_argument(
        "--expect-reconnect", action="store_true", help="'idle' expects the connection to be lost"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    props = Ice.createProperties()
    props.setProperty("Ice.Warn.Connections", "0")
    props.setProperty("Ice.ThreadPool.Client.Size", "2")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "4")
    if args.idle_timeout is not None:
        props.setProperty("Ice.Connection.Client.IdleTimeout", str(args.idle_timeout))
    # The communicator is bound to this loop: Ice's *Async calls return
    # awaitables of it. The loop runs only for the asyncio scenarios; the
    # others call Ice synchronously from this thread.
    loop = asyncio.new_event_loop()
    init_data = Ice.InitializationData(
        properties=props, eventLoopAdapter=Ice.asyncio.EventLoopAdapter(loop)
    )
    names = ALL if args.scenario == "all" else [args.scenario]
    communicator = Ice.initialize(initData=init_data)
    try:
        prx = communicator.stringToProxy(args.proxy).ice_invocationTimeout(INVOCATION_TIMEOUT_MS)
        c = Context(communicator, prx, args, result["checks"], result["info"])
        for name in names:
            result["current"] = name
            outcome = SCENARIOS[name](c)
            if inspect.isawaitable(outcome):  # the asyncio scenarios
                loop.run_until_complete(outcome)
    finally:
        # Not destroyAsync(): Ice 3.8.3's completion of it (an Ice thread
        # calling loop.call_soon_threadsafe) intermittently hung this process
        # at exit, after every call had completed.
        communicator.destroy()
        loop.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {
        "scenario": args.scenario,
        "ice_version": Ice.stringVersion(),
        "checks": [],
        "info": {},
    }
    status = 0
    start = time.monotonic()
    try:
        run(args, result)
        result["ok"] = True
    except Mismatch as ex:
        result.update(ok=False, error=f"{result.get('current')}: {ex}")
        status = 1
    except Exception as ex:  # any Ice failure is a failed scenario too
        result.update(ok=False, error=f"{result.get('current')}: {type(ex).__name__}: {ex}")
        status = 1
    result.pop("current", None)
    result["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(result, sort_keys=True), flush=True)
    if status:
        print(f"ice38_peer_client: FAILED {result['error']}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
