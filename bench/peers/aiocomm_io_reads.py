"""aiocomm with ``Communicator(loop_reads=False)`` on both ends: the I/O
threads read every socket and the loop only drains parsed messages (one
thread wake-up more per message); the servant is the headline's ``async def``."""

from __future__ import annotations

import functools

from bench.peers import aiocomm
from bench.peers.common import main

serve = functools.partial(aiocomm.serve, loop_reads=False)
connect = functools.partial(aiocomm.connect, loop_reads=False)

if __name__ == "__main__":
    main(serve, connect)
