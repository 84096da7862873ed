"""Lifecycle costs: a create/destroy cycle and one ``await destroy()``, per loop.

    python -m bench.lifecycle [--cycles 300]

Baseline in the same run: an empty ``asyncio.sleep(0)`` round, so the numbers
can be read against the cost of one loop turn on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

import aiocomm


async def measure(cycles: int) -> dict[str, float]:
    cycle_us: list[float] = []
    destroy_us: list[float] = []
    with_adapter_us: list[float] = []
    for _ in range(cycles):
        started = time.perf_counter()
        comm = aiocomm.Communicator()
        before_destroy = time.perf_counter()
        await comm.destroy()
        ended = time.perf_counter()
        cycle_us.append((ended - started) * 1e6)
        destroy_us.append((ended - before_destroy) * 1e6)
    for _ in range(cycles // 3):
        started = time.perf_counter()
        comm = aiocomm.Communicator()
        adapter = comm.create_object_adapter()
        adapter.activate()
        await comm.destroy()
        with_adapter_us.append((time.perf_counter() - started) * 1e6)
    turn_started = time.perf_counter()
    for _ in range(1000):
        await asyncio.sleep(0)
    turn_us = (time.perf_counter() - turn_started) * 1e6 / 1000
    return {
        "cycle_p50_us": statistics.median(cycle_us),
        "destroy_p50_us": statistics.median(destroy_us),
        "destroy_p99_us": sorted(destroy_us)[int(len(destroy_us) * 0.99) - 1],
        "cycle_with_adapter_p50_us": statistics.median(with_adapter_us),
        "loop_turn_us": turn_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    runners: dict[str, Callable[[Coroutine[Any, Any, dict[str, float]]], dict[str, float]]] = {
        "asyncio": asyncio.run,
        "uvloop": uvloop.run,
    }
    print(f"{'loop':8} {'cycle p50':>10} {'destroy p50':>12} {'destroy p99':>12}"
          f" {'cycle+adapter':>14} {'loop turn':>10}")
    for name, run in runners.items():
        r = run(measure(args.cycles))
        print(f"{name:8} {r['cycle_p50_us']:8.0f}µs {r['destroy_p50_us']:10.0f}µs"
              f" {r['destroy_p99_us']:10.0f}µs {r['cycle_with_adapter_p50_us']:12.0f}µs"
              f" {r['loop_turn_us']:8.1f}µs")


if __name__ == "__main__":
    main()
