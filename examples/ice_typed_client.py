"""aiocomm's typed client calling a stock ZeroC Ice server built from the same Slice.

    python examples/ice_typed_client.py                  # starts examples/ice/hello_server.py
    python examples/ice_typed_client.py "hello -t -e 1.1:tcp -h 127.0.0.1 -p 10000"

The Ice side is `slice2py examples/Hello.ice` plus examples/ice/hello_server.py,
run by Debian's /usr/bin/python3 (python3-zeroc-ice, zeroc-ice-compilers);
aiocomm's side loads the same Hello.ice.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiocomm
import aiocomm.slice

HERE = Path(__file__).resolve().parent
Demo: Any = aiocomm.slice.load(HERE / "Hello.ice").Demo


async def call(proxy_text: str) -> None:
    async with aiocomm.Communicator(invocation_timeout=10.0) as comm:
        hello = await Demo.HelloPrx.checked_cast(comm.proxy(proxy_text))
        if hello is None:
            raise SystemExit(f"{proxy_text} is not a ::Demo::Hello")
        print("sayHello:", await hello.sayHello("aiocomm"))
        print("greet   :", await hello.greet("aiocomm", 2))
        print("greet   :", await hello.greet("aiocomm", None))
        try:
            await hello.sayHello("")
        except Demo.NoNameError as error:
            print(f"sayHello('') raised {type(error).__name__}(hint={error.hint!r})")
        data = bytes(range(256)) * 16
        echoes = await asyncio.gather(*(hello.echo(data) for _ in range(100)))
        print("100 concurrent 4 KiB echoes intact:", all(e == data for e in echoes))


def main() -> int:
    if len(sys.argv) > 1:
        asyncio.run(call(sys.argv[1]))
        return 0
    with tempfile.TemporaryDirectory() as generated:
        subprocess.run(["slice2py", "--output-dir", generated, str(HERE / "Hello.ice")],
                       check=True, timeout=60)
        server = subprocess.Popen(["/usr/bin/python3", str(HERE / "ice" / "hello_server.py"),
                                   generated], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline().strip()
            if not line.startswith("READY "):
                print(f"the Ice server did not start: {line!r}", file=sys.stderr)
                return 1
            print("Ice server:", line.removeprefix("READY "))
            asyncio.run(call(line.removeprefix("READY ")))
        finally:
            assert server.stdin is not None
            server.stdin.close()  # the server exits when its stdin closes
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
