"""A hello server: one servant, one adapter, until Ctrl-C (or stdin closes with --stdin).

    python examples/hello_server.py [--endpoints "tcp -h 127.0.0.1 -p 10000"] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiocomm


class Hello:
    """Servant: every public method is an operation. Payloads are bytes."""

    type_ids = ["::Demo::Hello"]

    def say_hello(self, payload: bytes, current: aiocomm.Current) -> bytes:
        name = payload.decode() or "world"
        print(f"server: {current.operation}({name!r}) from {current.remote_address}", flush=True)
        return f"Hello, {name}!".encode()

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload

    async def slow_echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        await asyncio.sleep(0.01)  # async servants may await anything
        return payload

    def shutdown(self, payload: bytes, current: aiocomm.Current) -> None:
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
