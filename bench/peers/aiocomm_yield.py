"""aiocomm with an ``async def echo`` servant that awaits ``asyncio.sleep(0)``
once before answering: the servant that suspends. Beside the headline (which
never suspends, so the drain answers it without a task), its ratio is what
one suspension costs: the coroutine continues as a task on the loop and its
reply leaves when it finishes. Issue 13's target: at most one loop turn more
than the headline (compare the p50s at 1 in flight with ``bench.lifecycle``'s
loop-turn figure)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bench.peers import aiocomm
from bench.peers.common import main


class YieldingEchoServant:
    async def echo(self, payload: bytes, current: Any) -> bytes:
        await asyncio.sleep(0)
        return payload


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    async with aiocomm.serve(host, YieldingEchoServant()) as port:
        yield port


connect = aiocomm.connect

if __name__ == "__main__":
    main(serve, connect)
