"""A hello client: calls the hello server through a proxy.

    python examples/hello_client.py "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000" [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiocomm


async def main(proxy_text: str, count: int) -> None:
    async with aiocomm.Communicator(invocation_timeout=10.0) as comm:
        hello = comm.proxy(proxy_text)
        await hello.ping()
        print(f"client: ice_id -> {await hello.ice_id()}")
        reply = await hello.invoke("say_hello", b"aiocomm")
        print(f"client: say_hello -> {reply.decode()}")
        reply = await hello.invoke("slow_echo", b"async servants")
        print(f"client: slow_echo -> {reply.decode()}")
        try:
            await hello.invoke("no_such_operation")
        except aiocomm.OperationNotExistError as error:
            print(f"client: no_such_operation -> {type(error).__name__}: {error}")

        # 64 calls in flight at a time: one connection, batched completions.
        started = time.perf_counter()
        payload = b"x" * 16

        async def worker() -> None:
            for _ in range(count // 64):
                assert await hello.invoke("echo", payload) == payload

        await asyncio.gather(*(worker() for _ in range(64)))
        elapsed = time.perf_counter() - started
        done = count // 64 * 64
        print(f"client: {done} calls, 64 in flight: {done / elapsed:,.0f} calls/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("proxy")
    parser.add_argument("--count", type=int, default=6400)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.proxy, args.count))
    else:
        asyncio.run(main(args.proxy, args.count))
