#!/usr/bin/env python3
"""Reference ZeroC Ice 3.8 client for aiocomm interoperability tests.

Run with an interpreter that has ZeroC Ice 3.8 for Python (see
``peer_pythons.py``)::

    python tests/interop/ice38_peer_client.py PROXY SCENARIO \
        [--idle-timeout SECONDS] [--idle-seconds SECONDS] [--expect-reconnect]

PROXY is a stringified proxy of an aiocomm (or Ice) servant implementing the
test operations (see ``echo_servant.py`` and ``test_ice38_interop.py``).
SCENARIO is one of ``echo_scenarios.py``'s (``echo``, ``builtins``,
``errors``, ``errors_local``, ``oneway``, ``batch``), ``concurrent``, or one
only Ice 3.8 has: ``errors_status`` (statuses 8, 9, 10 and 42 from a
``fail_status`` operation), ``unauthorized``, ``idle``; or ``all`` (echo,
builtins, errors, oneway, batch, concurrent).

``--idle-timeout`` sets ``Ice.Connection.Client.IdleTimeout``: Ice 3.8 then
heartbeats after T/2 without writing and aborts the connection after T
without reading. The ``idle`` scenario calls ``echo``, leaves the connection
idle for ``--idle-seconds`` (default 6), calls ``echo`` again and checks the
connection survived (same ``Ice.Connection``, close callback never called);
with ``--expect-reconnect`` it checks the opposite (a negative control).

``concurrent`` uses Ice 3.8's asyncio integration: the communicator is bound
to an asyncio loop and 200 ``ice_invokeAsync`` calls are awaited together.
The JSON line printed is ``echo_scenarios.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import echo_scenarios as es
import Ice
import peer_serve
from ice_wire import EXTRA_STATUSES, encaps


def scenario_errors_status(c: es.Context) -> None:
    """Reply statuses above 7 (new names in Ice 3.8; any byte value is legal)."""
    texts: dict[str, str] = {}
    for status in EXTRA_STATUSES:
        ex = es.expect_raise(
            Ice.DispatchException,
            lambda s=status: es.invoke(c.prx, "fail_status", struct.pack("<i", s)),
            f"fail_status {status}",
        )
        es.check(ex.replyStatus == status, f"fail_status {status}: replyStatus {ex.replyStatus}")
        es.check(f"fail_status {status}" in str(ex), f"fail_status {status}: text {str(ex)!r}")
        texts[str(status)] = str(ex)
        c.checks.append(f"status{status}_dispatch")
    c.info["status_texts"] = texts
    es.check(es.invoke_ok(c.prx, "echo", b"after") == b"after", "echo after statuses failed")


def scenario_unauthorized(c: es.Context) -> None:
    """An aiocomm adapter whose authorize hook refuses "echo" (and allows the rest)."""
    ex = es.expect_raise(
        Ice.DispatchException, lambda: es.invoke(c.prx, "echo", b"x"), "echo refused"
    )
    es.check(
        ex.replyStatus == Ice.ReplyStatus.Unauthorized.value,
        f"refused echo: replyStatus {ex.replyStatus}",
    )
    c.info["unauthorized_text"] = str(ex)
    c.checks.append("status9_unauthorized")
    es.check(
        es.invoke_ok(c.prx, "get_count") is not None, "an allowed call after the refusal failed"
    )


async def scenario_concurrent(c: es.Context) -> None:
    """Ice 3.8 awaits its ``ice_invokeAsync`` calls on the communicator's asyncio loop."""
    timeout = es.INVOCATION_TIMEOUT_MS / 1000.0
    normal = Ice.OperationMode.Normal
    echoes = (c.prx.ice_invokeAsync("echo", normal, encaps(p)) for p in es.CONCURRENT_ECHOES)
    results = await asyncio.wait_for(asyncio.gather(*echoes), timeout=timeout)
    es.check_concurrent_echoes(c, results)
    start = time.monotonic()
    sleep_arg = encaps(struct.pack("<i", es.SLEEP_MS))
    sleeps = (
        c.prx.ice_invokeAsync("sleep", normal, sleep_arg) for _ in range(es.CONCURRENT_SLEEPS)
    )
    results = await asyncio.wait_for(asyncio.gather(*sleeps), timeout=timeout)
    es.check_concurrent_sleeps(c, results, start)


def scenario_idle(c: es.Context) -> None:
    prx = c.prx
    idle_seconds = c.args.idle_seconds
    es.check(es.invoke_ok(prx, "echo", b"before-idle") == b"before-idle", "echo before idle")
    con = prx.ice_getConnection()
    es.check(con is not None, "no connection")
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
    es.check(es.invoke_ok(prx, "echo", b"after-idle") == b"after-idle", "echo after idle")
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
        es.check(not same, f"the connection survived {idle_seconds} s idle ({first})")
        c.checks.append("idle_reconnected")
    else:
        es.check(
            same,
            f"the connection did not survive {idle_seconds} s idle: closed after {closed_at} s "
            f"({'; '.join(reasons) or 'no close callback'}); before {first!r}, after {second!r}",
        )
        c.checks.append("idle_same_connection")


SCENARIOS: dict[str, es.Scenario] = {
    **es.SCENARIOS,
    "errors_status": scenario_errors_status,
    "unauthorized": scenario_unauthorized,
    "concurrent": scenario_concurrent,
    "idle": scenario_idle,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = es.parser("ZeroC Ice 3.8 peer client for aiocomm tests", SCENARIOS)
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


@contextmanager
def session(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    props = peer_serve.properties()
    if args.idle_timeout is not None:
        props.setProperty("Ice.Connection.Client.IdleTimeout", str(args.idle_timeout))
    # The communicator is bound to this loop: Ice's *Async calls return
    # awaitables of it. The loop runs only for the asyncio scenarios; the
    # others call Ice synchronously from this thread.
    loop = asyncio.new_event_loop()
    communicator = peer_serve.initialize(props, Ice.asyncio.EventLoopAdapter(loop))
    try:
        yield communicator, loop.run_until_complete
    finally:
        # Not destroyAsync(): Ice 3.8.3's completion of it (an Ice thread
        # calling loop.call_soon_threadsafe) intermittently hung this process
        # at exit, after every call had completed.
        communicator.destroy()
        loop.close()


def main(argv: list[str]) -> int:
    return es.main("ice38_peer_client", parse_args(argv), SCENARIOS, session)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
