"""One replica of the hello service, registered with IceGrid in a replica group.

    python examples/icegrid/replica.py LOCATOR INDEX [--group HelloGroup] [--uvloop]

Its adapter registers as ``Hello-INDEX`` in the group (IceGrid creates the
group on the first registration), serves ``hello`` until SIGTERM, Ctrl-C or
the end of stdin, and then clears its registration on the way out. It prints
``READY <proxy>`` once registered, and ``SERVED <count> CPU <seconds>`` at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiocomm
import aiocomm.slice

Demo: Any = aiocomm.slice.load(Path(__file__).resolve().parent.parent / "Hello.ice").Demo


class Hello(Demo.Hello):  # type: ignore[misc]
    def __init__(self, index: int) -> None:
        self.index = index
        self.served = 0

    def sayHello(self, name: str, current: aiocomm.Current) -> str:
        self.served += 1
        return f"Hello, {name}, from replica {self.index}"

    def greet(self, name: str, times: int | None, current: aiocomm.Current) -> Any:
        self.served += 1
        return Demo.Greeting(text=f"replica {self.index}", count=self.served)

    def echo(self, data: bytes, current: aiocomm.Current) -> bytes:
        self.served += 1
        return data

    def shutdown(self, current: aiocomm.Current) -> None:
        communicator = current.adapter.communicator if current.adapter else None
        if communicator is not None:
            communicator.shutdown()


async def main(locator: str, index: int, group: str) -> None:
    async with aiocomm.Communicator(locator=locator, invocation_timeout=10.0) as comm:
        adapter = comm.create_object_adapter("tcp -h 127.0.0.1 -p 0", name="Hello",
                                             adapter_id=f"Hello-{index}",
                                             replica_group_id=group)
        servant = Hello(index)
        proxy = adapter.add(servant, "hello")
        await adapter.activate()  # registered: clients can find it now
        print(f"READY {proxy} at {adapter.endpoints[0]}", flush=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, comm.shutdown)
        loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.read() or comm.shutdown())
        await comm.wait_for_shutdown()  # shutdown deactivates: the registration goes
        cpu = time.process_time()
        try:
            print(f"SERVED {servant.served} CPU {cpu:.3f}", flush=True)
        except BrokenPipeError:  # nobody reads our output any more
            pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locator")
    parser.add_argument("index", type=int)
    parser.add_argument("--group", default="HelloGroup")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.locator, args.index, args.group))
    else:
        asyncio.run(main(args.locator, args.index, args.group))
