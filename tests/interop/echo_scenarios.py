"""The raw Ice peer clients' scenarios and their runner, Ice 3.7 and Ice 3.8.

Runs in the peer's interpreter. ``ice_peer_client.py`` (3.7) and
``ice38_peer_client.py`` (3.8) add what only their version has (3.8's extra
reply statuses and idle check; each version's own way of awaiting many
``ice_invokeAsync`` calls) and call ``main``. Where the two Ice APIs differ
inside a shared scenario, a small named function below says how.

Prints exactly one JSON line on stdout: ``{"ok": true, "scenario": ...,
"checks": [...], "info": {...}, ...}``; exit status 0 on success. On any
mismatch it prints ``{"ok": false, "error": ...}``, the message on stderr too,
and exits 1. Usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import inspect
import json
import struct
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import Ice
from ice_wire import (
    ECHO_SIZES,
    ENCODING,
    FAILURE_PAYLOAD,
    LOCAL_TEXT,
    TYPE_ID,
    UNKNOWN_TEXT,
    UNKNOWN_USER_TEXT,
    encaps,
    pattern,
)
from peer_serve import V38

INVOCATION_TIMEOUT_MS = 30000
# Scenario "all": everything both versions run against any echo servant.
ALL = ["echo", "builtins", "errors", "oneway", "batch", "concurrent"]


class Mismatch(Exception):
    pass


# --- where the Ice versions differ ------------------------------------------


def unknown_text(ex: Any) -> str:
    """The text of an Unknown*Exception: a field in 3.7, the message in 3.8."""
    return str(ex) if V38 else str(ex.unknown)


def reply_status_is(ex: Any, status: int) -> bool:
    """Ice 3.8 exceptions carry their reply status; 3.7's do not."""
    return not V38 or bool(ex.replyStatus == status)


# --- helpers ----------------------------------------------------------------


def decaps(data: bytes) -> bytes:
    if len(data) < 6:
        raise Mismatch(f"encapsulation too short: {data[:16]!r}")
    (size,) = struct.unpack_from("<i", data, 0)
    if size != len(data):
        raise Mismatch(f"encapsulation size {size}, but {len(data)} bytes")
    if data[4:6] != ENCODING:
        raise Mismatch(f"encapsulation encoding {data[4:6]!r}, expected 1.1")
    return bytes(data[6:])


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


Scenario = Callable[[Context], Any]

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
        and reply_status_is(ex, 2),
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
        and reply_status_is(ex, 3),
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
    text = unknown_text(ex)
    check(UNKNOWN_TEXT in text, f"UnknownException text {text!r} lacks {UNKNOWN_TEXT!r}")
    check(reply_status_is(ex, 7), f"UnknownException replyStatus {getattr(ex, 'replyStatus', 7)}")
    c.checks.append("status7_unknown")
    c.info["unknown_text"] = text

    # The connection is still usable after all of these.
    check(invoke_ok(prx, "echo", b"after-errors") == b"after-errors", "echo after errors failed")
    c.checks.append("echo_after_errors")


def scenario_errors_local(c: Context) -> None:
    prx = c.prx
    ex = expect_raise(
        Ice.UnknownLocalException, lambda: invoke(prx, "fail_local", b""), "fail_local"
    )
    text = unknown_text(ex)
    check(LOCAL_TEXT in text, f"UnknownLocalException text {text!r} lacks {LOCAL_TEXT!r}")
    c.checks.append("status5_unknown_local")
    ex = expect_raise(
        Ice.UnknownUserException, lambda: invoke(prx, "fail_unknown_user", b""), "fail_unknown_user"
    )
    text = unknown_text(ex)
    check(
        UNKNOWN_USER_TEXT in text,
        f"UnknownUserException text {text!r} lacks {UNKNOWN_USER_TEXT!r}",
    )
    c.checks.append("status6_unknown_user")


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


# The "concurrent" scenario: each version sends these its own way (3.7 blocks
# on futures, 3.8 awaits on asyncio) and checks the replies here.
CONCURRENT_ECHOES = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(200)]
# Dispatches overlap: 20 sleeps of 250 ms take far less than 5 s.
CONCURRENT_SLEEPS, SLEEP_MS = 20, 250


def check_concurrent_echoes(c: Context, results: list[tuple[bool, bytes]]) -> None:
    for i, ((ok, out), expected) in enumerate(zip(results, CONCURRENT_ECHOES, strict=True)):
        check(ok, f"concurrent echo {i}: user exception")
        check(decaps(bytes(out)) == expected, f"concurrent echo {i}: wrong result")
    c.checks.append(f"concurrent_echo_{len(CONCURRENT_ECHOES)}")


def check_concurrent_sleeps(c: Context, results: list[tuple[bool, bytes]], start: float) -> None:
    """``results`` of the sleeps sent at ``start`` (time.monotonic), all in now."""
    elapsed = time.monotonic() - start
    for ok, out in results:
        check(ok and decaps(bytes(out)) == b"", f"sleep returned {(ok, out)!r}")
    k, ms = CONCURRENT_SLEEPS, SLEEP_MS
    c.info["concurrent_sleep_seconds"] = round(elapsed, 3)
    check(elapsed < k * ms / 1000.0 / 2, f"{k} concurrent sleeps of {ms} ms took {elapsed:.2f} s")
    c.checks.append(f"concurrent_sleep_{k}")


SCENARIOS: dict[str, Scenario] = {
    "echo": scenario_echo,
    "builtins": scenario_builtins,
    "errors": scenario_errors,
    "errors_local": scenario_errors_local,
    "oneway": scenario_oneway,
    "batch": scenario_batch,
}

# --- runner -----------------------------------------------------------------

# session(args) opens the communicator and yields it with a function that runs
# an awaitable scenario to completion (Ice 3.8's asyncio ones).
Session = Callable[[argparse.Namespace], AbstractContextManager[tuple[Any, Callable[[Any], Any]]]]


def parser(description: str, scenarios: dict[str, Scenario]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("proxy")
    p.add_argument("scenario", choices=[*scenarios, "all"])
    return p


def _run(
    args: argparse.Namespace,
    scenarios: dict[str, Scenario],
    session: Session,
    result: dict[str, Any],
) -> None:
    names = ALL if args.scenario == "all" else [args.scenario]
    with session(args) as (communicator, run_awaitable):
        prx = communicator.stringToProxy(args.proxy).ice_invocationTimeout(INVOCATION_TIMEOUT_MS)
        c = Context(communicator, prx, args, result["checks"], result["info"])
        for name in names:
            result["current"] = name
            outcome = scenarios[name](c)
            if inspect.isawaitable(outcome):
                run_awaitable(outcome)


def main(
    prog: str, args: argparse.Namespace, scenarios: dict[str, Scenario], session: Session
) -> int:
    result: dict[str, Any] = {
        "scenario": args.scenario,
        "ice_version": Ice.stringVersion(),
        "checks": [],
        "info": {},
    }
    status = 0
    start = time.monotonic()
    try:
        _run(args, scenarios, session, result)
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
        print(f"{prog}: FAILED {result['error']}", file=sys.stderr, flush=True)
    return status

