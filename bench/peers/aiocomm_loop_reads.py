"""aiocomm with ``Communicator(loop_reads=True)`` on both ends: the event loop
reads its own sockets while it runs, one thread wake-up less per message."""

from __future__ import annotations

import functools

from bench.peers import aiocomm
from bench.peers.common import main

serve = functools.partial(aiocomm.serve, loop_reads=True)
connect = functools.partial(aiocomm.connect, loop_reads=True)

if __name__ == "__main__":
    main(serve, connect)
