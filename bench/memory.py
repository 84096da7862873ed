"""Memory: what an idle connection costs on each side, and whether RSS stays
flat over a long echo run.

    python -m bench.memory [--connections 500] [--requests 10000000] [--loop uvloop]
                           [--servant async|plain]

The long run echoes through an `async def` servant by default (what users
write); `--servant plain` takes a `def` method instead.
Client and server run in separate processes; RSS is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import uvloop

import aiocomm


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Control:
    def rss(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return str(rss_kib()).encode()

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload

    async def aecho(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


async def serve(adapters: int) -> None:
    async with aiocomm.Communicator() as comm:
        first = None
        for _ in range(adapters):
            adapter = comm.create_object_adapter()
            adapter.add(Control(), "c")
            adapter.activate()
            first = first or adapter
            print(adapter.endpoints[0], flush=True)
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def client(endpoints: list[str], requests: int, operation: str) -> None:
    async with aiocomm.Communicator() as comm:
        control = comm.proxy(f"c:{endpoints[0]}")
        await control.ping()
        await asyncio.sleep(1.5)  # let the first connection's buffers settle
        server_before = int(await control.invoke("rss"))
        client_before = rss_kib()
        proxies = [comm.proxy(f"c:{e}") for e in endpoints[1:]]
        await asyncio.gather(*(p.ping() for p in proxies))
        await asyncio.sleep(2.5)  # idle: buffers are given back after a second
        server_after = int(await control.invoke("rss"))
        client_after = rss_kib()
        n = len(proxies)
        print(f"idle connections: {n}")
        print(f"  server RSS per connection: {(server_after - server_before) / n:6.1f} KiB")
        print(f"  client RSS per connection: {(client_after - client_before) / n:6.1f} KiB")

        if requests:
            payload = b"x" * 16
            done = 0
            samples: list[tuple[int, int, int]] = []

            async def worker(count: int) -> None:
                nonlocal done
                for _ in range(count):
                    await control.invoke(operation, payload)
                    done += 1

            started = time.perf_counter()
            per_worker = requests // 64
            task = asyncio.gather(*(worker(per_worker) for _ in range(64)))
            while not task.done():
                await asyncio.sleep(5)
                samples.append((done, rss_kib(), int(await control.invoke("rss"))))
            await task
            elapsed = time.perf_counter() - started
            print(f"long run ({operation}): {done:,} requests in {elapsed:.0f} s "
                  f"({done / elapsed:,.0f}/s)")
            print(f"  {'requests':>12} {'client RSS':>12} {'server RSS':>12}")
            for count, client_rss, server_rss in samples:
                print(f"  {count:12,} {client_rss:10,} K {server_rss:10,} K")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--requests", type=int, default=0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--servant", choices=["async", "plain"], default="async")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    if args.serve:
        run(serve(args.serve))
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.memory", "--serve", str(args.connections + 1),
         "--loop", args.loop],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdin is not None
    endpoints = []
    for line in server.stdout:
        if line.strip() == "READY":
            break
        endpoints.append(line.strip())
    try:
        run(client(endpoints, args.requests, "aecho" if args.servant == "async" else "echo"))
    finally:
        server.stdin.close()
        server.wait(30)


if __name__ == "__main__":
    main()
