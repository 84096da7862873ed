"""A hello server: one typed servant, one adapter, until Ctrl-C (or stdin closes with --stdin).

    python examples/hello_server.py [--endpoints "tcp -h 127.0.0.1 -p 10000"] [--uvloop]

The interface comes from Hello.ice, compiled at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiocomm
import aiocomm.slice

Demo: Any = aiocomm.slice.load(Path(__file__).resolve().with_name("Hello.ice")).Demo


class Hello(Demo.Hello):  # type: ignore[misc]
    """Servant: each Slice operation is a method, plain or async, taking its
    in parameters and then `current`."""

    async def sayHello(self, name: str, current: aiocomm.Current) -> str:
        if not name:
            raise Demo.NoNameError(hint="say who you are")
        print(f"server: sayHello({name!r}) from {current.remote_address}", flush=True)
        return f"Hello, {name}!"

    def greet(self, name: str, times: int | None, current: aiocomm.Current) -> Any:
        count = 1 if times is None else times
        return Demo.Greeting(text=" ".join([f"Hi {name}"] * count), mood=Demo.Mood.cheerful,
                             count=count)

    def echo(self, data: bytes, current: aiocomm.Current) -> bytes:
        return data

    def shutdown(self, current: aiocomm.Current) -> None:
        print("server: shutdown requested", flush=True)
        assert current.adapter is not None
        communicator = current.adapter.communicator
        if communicator is not None:
            communicator.shutdown()


async def main(endpoints: str, stop_on_stdin: bool) -> None:
    async with aiocomm.Communicator() as comm:
        adapter = comm.create_object_adapter(endpoints, name="Hello")
        proxy = adapter.add(Hello(), "hello")
        adapter.activate()
        print(f"READY {proxy}", flush=True)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, comm.shutdown)
        loop.add_signal_handler(signal.SIGTERM, comm.shutdown)
        if stop_on_stdin:
            loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or comm.shutdown())
        await comm.wait_for_shutdown()
    print("server: bye", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", default="tcp -h 127.0.0.1 -p 0")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--stdin", action="store_true", help="stop when stdin closes")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.endpoints, args.stdin))
    else:
        asyncio.run(main(args.endpoints, args.stdin))
