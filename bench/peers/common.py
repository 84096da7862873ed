"""What every peer shares: the command line, the event loop, the load and the watchdogs.

A peer module provides two async context managers and calls :func:`main`:

* ``serve(host)`` starts an echo server on ``host`` (port 0) and yields the real port;
* ``connect(host, port)`` yields ``call(payload) -> reply``.

``python -m bench.peers.NAME server --loop L`` prints ``READY <host> <port>`` once it
listens and then serves until its standard input closes (or ``--max-seconds`` pass).
``python -m bench.peers.NAME client --loop L --port P ...`` runs one cell per
(payload, in-flight) pair and prints one JSON line per cell.
``--tls DIR`` names a directory of certificates made by ``tests/make_test_certs.sh``;
the TLS peers (``*_tls``) read it with :func:`tls_dir`, the others ignore it.

Standard library only: the Ice peer runs this under Debian's ``/usr/bin/python3``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

Call = Callable[[bytes], Awaitable[bytes]]
Serve = Callable[[str], AbstractAsyncContextManager[int]]
Connect = Callable[[str, int], AbstractAsyncContextManager[Call]]

LOOPS = ("asyncio", "uvloop")
READY = "READY"

_tls_dir: str | None = None


def tls_dir() -> str:
    """The ``--tls`` directory: ``ca.pem``, ``server.pem`` and ``server.key`` of the test PKI."""
    if _tls_dir is None:
        raise RuntimeError("this peer needs --tls DIR (certificates made by "
                           "tests/make_test_certs.sh)")
    return _tls_dir


class EchoMismatch(RuntimeError):
    """The reply was not the request's payload."""


class Pending:
    """Request-id bookkeeping for clients that multiplex requests on one connection."""

    def __init__(self) -> None:
        self._futures: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._error: BaseException | None = None

    def new(self) -> tuple[int, asyncio.Future[bytes]]:
        if self._error is not None:
            raise ConnectionError(f"reply reader stopped: {self._error!r}")
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._futures[self._next_id] = future
        return self._next_id, future

    def resolve(self, request_id: int, reply: bytes) -> None:
        future = self._futures.pop(request_id)
        if not future.done():
            future.set_result(reply)

    def fail_all(self, error: BaseException) -> None:
        self._error = error
        for future in self._futures.values():
            if not future.done():
                future.set_exception(ConnectionError(f"reply reader stopped: {error!r}"))
        self._futures.clear()


def make_payload(size: int) -> bytes:
    """Deterministic, non-trivial payload of ``size`` bytes."""
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in microseconds."""
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000.0


async def measure(
    call: Call, payload: bytes, inflight: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Closed loop: ``inflight`` workers each issue the next request when the last returns.

    Requests completing during the warm-up are not counted. Throughput counts the
    replies received inside the measured window; latencies are those of requests
    both sent and answered inside it.
    """
    clock = time.perf_counter_ns
    # A peer's call may carry `counters() -> dict[str, int]`: its library's
    # own counters, reported as their change over the measured window.
    read_counters: Callable[[], dict[str, int]] | None = getattr(call, "counters", None)
    counters_at_start: dict[str, int] = {}

    async def snapshot_at_start() -> None:
        await asyncio.sleep(warmup)
        if read_counters is not None:
            counters_at_start.update(read_counters())

    t_start = clock() + int(warmup * 1e9)
    t_end = t_start + int(seconds * 1e9)
    latencies: list[int] = []
    completed = 0

    async def worker() -> None:
        nonlocal completed
        while True:
            t0 = clock()
            if t0 >= t_end:
                return
            reply = await call(payload)
            t1 = clock()
            if reply != payload:
                raise EchoMismatch(
                    f"sent {len(payload)} bytes, got {len(reply)} bytes back that differ"
                )
            if t_start <= t1 < t_end:
                completed += 1
                if t0 >= t_start:
                    latencies.append(t1 - t0)

    async with asyncio.TaskGroup() as group:
        snapshot = group.create_task(snapshot_at_start())
        for _ in range(inflight):
            group.create_task(worker())
    counters: dict[str, int] = {}
    if read_counters is not None and snapshot.done():
        end = read_counters()
        counters = {k: end[k] - counters_at_start.get(k, 0) for k in end
                    if isinstance(end[k], int)}
    if completed == 0:
        raise RuntimeError("no request completed inside the measured window")
    latencies.sort()
    loop = asyncio.get_running_loop()
    return {
        "payload": len(payload),
        "inflight": inflight,
        "seconds": seconds,
        "requests": completed,
        "rps": completed / seconds,
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "loop_impl": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "counters": counters,
    }


def run_on_loop(coro: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``coro`` on the default asyncio loop or on uvloop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop != "asyncio":
        coro.close()
        raise SystemExit(f"unknown loop {loop!r}")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


def _exit_on_stdin_eof() -> None:
    """The runner holds our stdin open; when it closes (or the runner dies), exit at once."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def _start_watchdogs(max_seconds: float, watch_stdin: bool) -> None:
    killer = threading.Timer(max_seconds, lambda: os._exit(3))
    killer.daemon = True
    killer.start()
    if watch_stdin:
        threading.Thread(target=_exit_on_stdin_eof, daemon=True).start()


async def _serve_forever(serve: Serve, host: str) -> None:
    async with serve(host) as port:
        print(f"{READY} {host} {port}", flush=True)
        await asyncio.Event().wait()


async def _run_client(connect: Connect, args: argparse.Namespace) -> int:
    cells = [(size, inflight) for size in args.payloads for inflight in args.inflight]
    async with connect(args.host, args.port) as call:
        for size, inflight in cells:
            try:
                result = await measure(
                    call, make_payload(size), inflight, args.seconds, args.warmup
                )
            except Exception as exc:  # reported to the runner as this cell's failure
                traceback.print_exc()
                root: BaseException = exc
                while isinstance(root, BaseExceptionGroup) and root.exceptions:
                    root = root.exceptions[0]
                error = f"{type(root).__name__}: {root}"
                print(
                    json.dumps({"payload": size, "inflight": inflight, "error": error}), flush=True
                )
                return 1
            print(json.dumps(result), flush=True)
    return 0


def _int_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def _loopback(text: str) -> str:
    if not ipaddress.ip_address(text).is_loopback:
        raise argparse.ArgumentTypeError("the benchmark only talks to loopback addresses")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one benchmark peer: echo server or load client")
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--loop", choices=LOOPS, default="asyncio")
    parser.add_argument("--host", type=_loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--payloads", type=_int_list, default=[16, 4096])
    parser.add_argument("--inflight", type=_int_list, default=[1, 64])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="hard lifetime limit of this process"
    )
    parser.add_argument(
        "--tls", metavar="DIR", default=None,
        help="certificates of tests/make_test_certs.sh, for the TLS peers",
    )
    return parser.parse_args(argv)


def main(serve: Serve, connect: Connect, argv: list[str] | None = None) -> None:
    global _tls_dir
    args = parse_args(argv)
    _tls_dir = args.tls
    if args.role == "server":
        _start_watchdogs(args.max_seconds, watch_stdin=True)
        try:
            run_on_loop(_serve_forever(serve, args.host), args.loop)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)  # don't let interpreter shutdown trip over the stdin watcher
        os._exit(0)
    if args.port <= 0:
        raise SystemExit("client needs --port")
    _start_watchdogs(args.max_seconds, watch_stdin=False)
    status = 0

    async def client() -> None:
        nonlocal status
        status = await _run_client(connect, args)

    run_on_loop(client(), args.loop)
    sys.stdout.flush()
    sys.stderr.flush()
    # Some peers leave non-daemon threads behind (Ice, gRPC): don't wait for them.
    os._exit(status)


__all__ = ["Call", "Connect", "Serve", "main", "make_payload", "measure", "tls_dir"]
