"""aiocomm calling a real ZeroC Ice 3.7 server.

Usage::

    python examples/interop_ice_client.py            # starts tests/interop/ice_peer_server.py
    python examples/interop_ice_client.py "test -t -e 1.1:tcp -h 127.0.0.1 -p 10000"

Starting the peer needs Debian's ``python3-zeroc-ice`` for ``/usr/bin/python3``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiocomm

PEER = Path(__file__).resolve().parent.parent / "tests" / "interop" / "ice_peer_server.py"


async def demo(proxy_str: str) -> None:
    async with aiocomm.Communicator(invocation_timeout=10.0) as comm:
        proxy = comm.proxy(proxy_str)
        await proxy.ping()
        print("ice_id :", await proxy.ice_id())
        print("ice_ids:", await proxy.ice_ids())
        print("echo   :", await proxy.invoke("echo", b"hello, Ice"))
        results = await asyncio.gather(*(proxy.invoke("echo", bytes([i])) for i in range(100)))
        print("100 concurrent echoes ok:", [r[0] for r in results] == list(range(100)))
        try:
            await proxy.invoke("fail_user")
        except aiocomm.UserError as ex:
            print("user exception payload:", bytes(ex.payload))
        try:
            await proxy.invoke("nope")
        except aiocomm.OperationNotExistError as ex:
            print("operation not exist, status", ex.status)


def main() -> int:
    if len(sys.argv) > 1:
        asyncio.run(demo(sys.argv[1]))
        return 0
    server = subprocess.Popen(
        ["/usr/bin/python3", str(PEER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line.startswith("READY "):
            print(f"Ice peer server did not start: {line!r}", file=sys.stderr)
            return 1
        print("Ice server:", line[len("READY ") :])
        asyncio.run(demo(line[len("READY ") :]))
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the peer exits when its stdin closes
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
