#!/usr/bin/python3
"""Reference ZeroC Ice 3.7 client for aiocomm interoperability tests.

Run with the system interpreter that has Debian's ``python3-zeroc-ice``::

    /usr/bin/python3 tests/interop/ice_peer_client.py PROXY SCENARIO

PROXY is a stringified proxy of an aiocomm (or Ice) servant implementing the
test operations (see ``ice_peer_server.py`` and ``test_ice_interop.py``).
SCENARIO is one of ``echo``, ``builtins``, ``errors``, ``errors_local``,
``oneway``, ``batch``, ``concurrent`` or ``all`` (everything except
``errors_local``, which needs a servant that can produce reply statuses 5 and 6).

Prints exactly one JSON line on stdout: ``{"ok": true, "scenario": ...,
"checks": [...], ...}``; exit status 0 on success. On any mismatch it prints
``{"ok": false, "error": ...}``, the message on stderr too, and exits 1.
Usage errors exit 2.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import Ice

TYPE_ID = "::Test::Echo"
ENCODING = b"\x01\x01"

# Keep these in sync with ice_peer_server.py and test_ice_interop.py.
_REASON = b"\x0cfail_user ok"
FAILURE_PAYLOAD = b"\x31" + b"\x0e::Test::Failure" + struct.pack("<i", 4 + len(_REASON)) + _REASON
UNKNOWN_TEXT = "fail_unknown: deliberate Python error"
LOCAL_TEXT = "fail_local"
UNKNOWN_USER_TEXT = "fail_unknown_user: deliberate"

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
    if ctx is None:
        ok, out = prx.ice_invoke(op, mode, encaps(payload))
    else:
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


def with_identity(communicator: Any, prx: Any, name: str) -> Any:
    return prx.ice_identity(Ice.stringToIdentity(name))


# --- scenarios --------------------------------------------------------------


def scenario_echo(communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]) -> None:
    for size in ECHO_SIZES:
        data = pattern(size, size)
        out = invoke_ok(prx, "echo", data)
        if out != data:
            diff = next(
                (i for i, (a, b) in enumerate(zip(out, data, strict=False)) if a != b), "end"
            )
            raise Mismatch(f"echo of {size} bytes returned {len(out)} bytes (first diff at {diff})")
        checks.append(f"echo_{size}")
    # Request context and idempotent mode must be parsed (and not corrupt the params).
    data = b"with-context"
    out = invoke_ok(prx, "echo", data, ctx={"k": "v", "empty": "", "\u00e9": "\u00fc" * 300})
    check(out == data, f"echo with context returned {out!r}")
    checks.append("echo_context")
    out = invoke_ok(prx, "echo", data, mode=Ice.OperationMode.Idempotent)
    check(out == data, f"idempotent echo returned {out!r}")
    checks.append("echo_idempotent")
    info["echo_sizes"] = ECHO_SIZES


def scenario_builtins(communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]) -> None:
    prx.ice_ping()
    checks.append("ice_ping")
    check(prx.ice_isA(TYPE_ID) is True, f"ice_isA({TYPE_ID}) is not True")
    check(prx.ice_isA("::Ice::Object") is True, "ice_isA(::Ice::Object) is not True")
    check(prx.ice_isA("::Test::Other") is False, "ice_isA(::Test::Other) is not False")
    checks.append("ice_isA")
    type_id = prx.ice_id()
    check(type_id == TYPE_ID, f"ice_id() = {type_id!r}")
    checks.append("ice_id")
    ids = list(prx.ice_ids())
    check(set(ids) == {"::Ice::Object", TYPE_ID} and len(ids) == 2, f"ice_ids() = {ids!r}")
    checks.append("ice_ids")
    info["ice_ids"] = ids
    # Built-ins via dynamic invocation too (raw bytes).
    out = invoke_ok(prx, "ice_isA", b"\x0c" + TYPE_ID.encode(), mode=Ice.OperationMode.Idempotent)
    check(out == b"\x01", f"raw ice_isA returned {out!r}")
    out = invoke_ok(prx, "ice_id", mode=Ice.OperationMode.Idempotent)
    check(out == b"\x0c" + TYPE_ID.encode(), f"raw ice_id returned {out!r}")
    checks.append("raw_builtins")
    missing = with_identity(communicator, prx, "missing")
    ex = expect_raise(Ice.ObjectNotExistException, missing.ice_ping, "ice_ping on missing")
    check(ex.id.name == "missing" and ex.operation == "ice_ping", f"ObjectNotExist fields: {ex}")
    checks.append("ice_ping_missing")


def scenario_errors(communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]) -> None:
    # 1: user exception, payload passed through unchanged.
    ok, out = invoke(prx, "fail_user", b"")
    check(not ok, f"fail_user: expected a user exception, got ok {out[:64]!r}")
    check(
        decaps(out) == FAILURE_PAYLOAD, f"fail_user payload {decaps(out)!r} != {FAILURE_PAYLOAD!r}"
    )
    checks.append("status1_user")

    # 2: object does not exist.
    missing = with_identity(communicator, prx, "missing")
    ex = expect_raise(
        Ice.ObjectNotExistException, lambda: invoke(missing, "echo", b"x"), "echo on missing"
    )
    check(
        ex.id.name == "missing"
        and ex.id.category == ""
        and ex.facet == ""
        and ex.operation == "echo",
        f"ObjectNotExist fields: id={ex.id!r} facet={ex.facet!r} op={ex.operation!r}",
    )
    checks.append("status2_object_not_exist")

    # 3: facet does not exist.
    faceted = prx.ice_facet("nosuch")
    ex = expect_raise(
        Ice.FacetNotExistException, lambda: invoke(faceted, "echo", b"x"), "echo on facet"
    )
    check(
        ex.id.name == prx.ice_getIdentity().name
        and ex.facet == "nosuch"
        and ex.operation == "echo",
        f"FacetNotExist fields: id={ex.id!r} facet={ex.facet!r} op={ex.operation!r}",
    )
    checks.append("status3_facet_not_exist")

    # 4: operation does not exist.
    ex = expect_raise(Ice.OperationNotExistException, lambda: invoke(prx, "nope", b""), "nope")
    check(
        ex.operation == "nope" and ex.id.name == prx.ice_getIdentity().name,
        f"OperationNotExist fields: id={ex.id!r} facet={ex.facet!r} op={ex.operation!r}",
    )
    checks.append("status4_operation_not_exist")

    # 7: unknown exception, carrying the servant's text.
    ex = expect_raise(
        Ice.UnknownException, lambda: invoke(prx, "fail_unknown", b""), "fail_unknown"
    )
    check(
        UNKNOWN_TEXT in ex.unknown, f"UnknownException text {ex.unknown!r} lacks {UNKNOWN_TEXT!r}"
    )
    checks.append("status7_unknown")
    info["unknown_text"] = ex.unknown

    # The connection is still usable after all of these.
    check(invoke_ok(prx, "echo", b"after-errors") == b"after-errors", "echo after errors failed")
    checks.append("echo_after_errors")


def scenario_errors_local(
    communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]
) -> None:
    ex = expect_raise(
        Ice.UnknownLocalException, lambda: invoke(prx, "fail_local", b""), "fail_local"
    )
    check(
        LOCAL_TEXT in ex.unknown, f"UnknownLocalException text {ex.unknown!r} lacks {LOCAL_TEXT!r}"
    )
    checks.append("status5_unknown_local")
    ex = expect_raise(
        Ice.UnknownUserException, lambda: invoke(prx, "fail_unknown_user", b""), "fail_unknown_user"
    )
    check(
        UNKNOWN_USER_TEXT in ex.unknown,
        f"UnknownUserException text {ex.unknown!r} lacks {UNKNOWN_USER_TEXT!r}",
    )
    checks.append("status6_unknown_user")


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


def scenario_oneway(communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]) -> None:
    n = 100
    base = _get_count(prx)
    oneway = prx.ice_oneway()
    for _ in range(n):
        ok, _ = invoke(oneway, "count_oneway")
        check(ok, "oneway invoke returned not ok")
    _wait_count(prx, base + n, "oneway")
    checks.append(f"oneway_{n}")


def scenario_batch(communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]) -> None:
    n = 50
    base = _get_count(prx)
    batch = prx.ice_batchOneway()
    for _ in range(n):
        invoke(batch, "count_oneway")
    batch.ice_flushBatchRequests()
    _wait_count(prx, base + n, "batch oneway")
    checks.append(f"batch_oneway_{n}")


def scenario_concurrent(
    communicator: Any, prx: Any, checks: list[str], info: dict[str, Any]
) -> None:
    n = 200
    payloads = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(n)]
    futures = [prx.ice_invokeAsync("echo", Ice.OperationMode.Normal, encaps(p)) for p in payloads]
    for i, (fut, expected) in enumerate(zip(futures, payloads, strict=True)):
        ok, out = fut.result(INVOCATION_TIMEOUT_MS / 1000.0)
        check(ok, f"concurrent echo {i}: user exception")
        check(decaps(bytes(out)) == expected, f"concurrent echo {i}: wrong result")
    checks.append(f"concurrent_echo_{n}")

    # Dispatches overlap: 20 sleeps of 250 ms take far less than 5 s.
    k, ms = 20, 250
    start = time.monotonic()
    futures = [
        prx.ice_invokeAsync("sleep", Ice.OperationMode.Normal, encaps(struct.pack("<i", ms)))
        for _ in range(k)
    ]
    for fut in futures:
        ok, out = fut.result(INVOCATION_TIMEOUT_MS / 1000.0)
        check(ok and decaps(bytes(out)) == b"", f"sleep returned {(ok, out)!r}")
    elapsed = time.monotonic() - start
    info["concurrent_sleep_seconds"] = round(elapsed, 3)
    check(elapsed < k * ms / 1000.0 / 2, f"{k} concurrent sleeps of {ms} ms took {elapsed:.2f} s")
    checks.append(f"concurrent_sleep_{k}")


SCENARIOS: dict[str, Callable[[Any, Any, list[str], dict[str, Any]], None]] = {
    "echo": scenario_echo,
    "builtins": scenario_builtins,
    "errors": scenario_errors,
    "errors_local": scenario_errors_local,
    "oneway": scenario_oneway,
    "batch": scenario_batch,
    "concurrent": scenario_concurrent,
}
ALL = ["echo", "builtins", "errors", "oneway", "batch", "concurrent"]


def main(argv: list[str]) -> int:
    if len(argv) != 2 or (argv[1] not in SCENARIOS and argv[1] != "all"):
        print(f"usage: ice_peer_client.py PROXY {{{'|'.join(SCENARIOS)}|all}}", file=sys.stderr)
        return 2
    proxy_str, scenario = argv
    names = ALL if scenario == "all" else [scenario]

    init_data = Ice.InitializationData()
    props = Ice.createProperties()
    props.setProperty("Ice.Warn.Connections", "0")
    props.setProperty("Ice.ThreadPool.Client.Size", "2")
    props.setProperty("Ice.ThreadPool.Client.SizeMax", "4")
    init_data.properties = props

    checks: list[str] = []
    info: dict[str, Any] = {}
    result: dict[str, Any] = {"scenario": scenario, "ice_version": Ice.stringVersion()}
    status = 0
    start = time.monotonic()
    current = ""
    try:
        with Ice.initialize(init_data) as communicator:
            prx = communicator.stringToProxy(proxy_str).ice_invocationTimeout(INVOCATION_TIMEOUT_MS)
            for name in names:
                current = name
                SCENARIOS[name](communicator, prx, checks, info)
        result["ok"] = True
    except Mismatch as ex:
        result.update(ok=False, error=f"{current}: {ex}")
        status = 1
    except Exception as ex:  # any Ice failure is a failed scenario too
        result.update(ok=False, error=f"{current}: {type(ex).__name__}: {ex}")
        status = 1
    result["checks"] = checks
    result["info"] = info
    result["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(result, sort_keys=True), flush=True)
    if status:
        print(f"ice_peer_client: FAILED {result['error']}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
