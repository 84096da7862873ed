"""The main job: start the hello server in its own process, run the client against it,
and show both sides of the exchange.

    python examples/demo.py [--uvloop]
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    flags = ["--uvloop"] if "--uvloop" in sys.argv[1:] else []
    server = subprocess.Popen(
        [sys.executable, str(HERE / "hello_server.py"), "--stdin", *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    try:
        line = server.stdout.readline()
        if not line.startswith("READY "):
            print(f"the server did not start: {line!r}", file=sys.stderr)
            return 1
        proxy = line.removeprefix("READY ").strip()
        print(f"demo: server is up at {proxy}")
        # Show the server's side as it happens.
        def show_server() -> None:
            assert server.stdout is not None
            for text in server.stdout:
                print(text, end="", flush=True)

        echo = threading.Thread(target=show_server)
        echo.start()
        client = subprocess.run(
            [sys.executable, str(HERE / "hello_client.py"), proxy, *flags],
            timeout=60,
            check=False,
        )
        server.stdin.close()
        server.wait(timeout=15)
        echo.join(5)
        return client.returncode or server.returncode
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
