"""aiocomm with a plain ``def echo`` servant: the fastest form, beside the
``async def`` headline (bench.peers.aiocomm) to show what a coroutine costs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bench.peers import aiocomm
from bench.peers.common import main


class EchoServant:
    def echo(self, payload: bytes, current: Any) -> bytes:
        return payload


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    async with aiocomm.serve(host, EchoServant()) as port:
        yield port


connect = aiocomm.connect

if __name__ == "__main__":
    main(serve, connect)
