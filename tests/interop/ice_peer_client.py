#!/usr/bin/python3
"""Reference ZeroC Ice 3.7 client for aiocomm interoperability tests.

Run with the system interpreter that has Debian's ``python3-zeroc-ice``::

    /usr/bin/python3 tests/interop/ice_peer_client.py PROXY SCENARIO

PROXY is a stringified proxy of an aiocomm (or Ice) servant implementing the
test operations (see ``echo_servant.py`` and ``test_ice_interop.py``).
SCENARIO is one of ``echo``, ``builtins``, ``errors``, ``errors_local``,
``oneway``, ``batch``, ``concurrent`` or ``all`` (everything except
``errors_local``, which needs a servant that can produce reply statuses 5 and 6).
The scenarios and the JSON line printed are ``echo_scenarios.py``'s.
"""

from __future__ import annotations

import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import echo_scenarios as es
import Ice
import peer_serve
from ice_wire import encaps, pattern


def scenario_concurrent(c: es.Context) -> None:
    """Ice 3.7 awaits its ``ice_invokeAsync`` futures by blocking on each."""
    prx = c.prx
    n = 200
    payloads = [struct.pack("<i", i) + pattern(i * 37 % 3000, i) for i in range(n)]
    futures = [prx.ice_invokeAsync("echo", Ice.OperationMode.Normal, encaps(p)) for p in payloads]
    for i, (fut, expected) in enumerate(zip(futures, payloads, strict=True)):
        ok, out = fut.result(es.INVOCATION_TIMEOUT_MS / 1000.0)
        es.check(ok, f"concurrent echo {i}: user exception")
        es.check(es.decaps(bytes(out)) == expected, f"concurrent echo {i}: wrong result")
    c.checks.append(f"concurrent_echo_{n}")

    # Dispatches overlap: 20 sleeps of 250 ms take far less than 5 s.
    k, ms = 20, 250
    start = time.monotonic()
    futures = [
        prx.ice_invokeAsync("sleep", Ice.OperationMode.Normal, encaps(struct.pack("<i", ms)))
        for _ in range(k)
    ]
    for fut in futures:
        ok, out = fut.result(es.INVOCATION_TIMEOUT_MS / 1000.0)
        es.check(ok and es.decaps(bytes(out)) == b"", f"sleep returned {(ok, out)!r}")
    elapsed = time.monotonic() - start
    c.info["concurrent_sleep_seconds"] = round(elapsed, 3)
    es.check(
        elapsed < k * ms / 1000.0 / 2, f"{k} concurrent sleeps of {ms} ms took {elapsed:.2f} s"
    )
    c.checks.append(f"concurrent_sleep_{k}")


SCENARIOS = {**es.SCENARIOS, "concurrent": scenario_concurrent}


def _no_awaitable(outcome: Any) -> None:
    raise TypeError(f"Ice 3.7 scenarios are synchronous, not {outcome!r}")


@contextmanager
def session(args: Any) -> Iterator[tuple[Any, Any]]:
    with peer_serve.initialize(peer_serve.properties()) as communicator:
        yield communicator, _no_awaitable


def main(argv: list[str]) -> int:
    parser = es.parser("ZeroC Ice 3.7 peer client for aiocomm tests", SCENARIOS)
    return es.main("ice_peer_client", parser.parse_args(argv), SCENARIOS, session)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
