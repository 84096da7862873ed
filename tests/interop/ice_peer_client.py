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
from ice_wire import encaps


def scenario_concurrent(c: es.Context) -> None:
    """Ice 3.7 waits for its ``ice_invokeAsync`` futures by blocking on each."""
    timeout = es.INVOCATION_TIMEOUT_MS / 1000.0
    normal = Ice.OperationMode.Normal
    futures = [c.prx.ice_invokeAsync("echo", normal, encaps(p)) for p in es.CONCURRENT_ECHOES]
    es.check_concurrent_echoes(c, [f.result(timeout) for f in futures])
    start = time.monotonic()
    sleep_arg = encaps(struct.pack("<i", es.SLEEP_MS))
    futures = [
        c.prx.ice_invokeAsync("sleep", normal, sleep_arg) for _ in range(es.CONCURRENT_SLEEPS)
    ]
    es.check_concurrent_sleeps(c, [f.result(timeout) for f in futures], start)


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
