"""A hello client: calls the hello server through a typed proxy.

    python examples/hello_client.py "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000" [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import aiocomm
import aiocomm.slice

Demo: Any = aiocomm.slice.load(Path(__file__).resolve().with_name("Hello.ice")).Demo


async def main(proxy_text: str, count: int) -> None:
    async with aiocomm.Communicator(invocation_timeout=10.0) as comm:
        hello = await Demo.HelloPrx.checked_cast(comm.proxy(proxy_text))
        if hello is None:
            raise SystemExit(f"{proxy_text} is not a ::Demo::Hello")
        print(f"client: sayHello -> {await hello.sayHello('aiocomm')}")
        print(f"client: greet -> {await hello.greet('aiocomm', 2)}")
        try:
            await hello.sayHello("")
        except Demo.NoNameError as error:
            print(f"client: sayHello('') -> {type(error).__name__}(hint={error.hint!r})")

        # 64 calls in flight at a time: one connection, batched completions.
        started = time.perf_counter()
        payload = b"x" * 16

        async def worker() -> None:
            for _ in range(count // 64):
                assert await hello.echo(payload) == payload

        await asyncio.gather(*(worker() for _ in range(64)))
        elapsed = time.perf_counter() - started
        done = count // 64 * 64
        print(f"client: {done} typed echoes, 64 in flight: {done / elapsed:,.0f} calls/s")


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
