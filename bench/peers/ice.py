"""ZeroC Ice 3.7 for Python (Debian's ``python3-zeroc-ice``), dynamic invocation.

Server: an ``Ice.Blobject`` that returns the request's encapsulation (Ice's own
thread pool dispatches it; the ``--loop`` option only affects the idle main thread).
Client: ``ice_invokeAsync`` with the Ice future wrapped for asyncio by ``Ice.wrap_future``.
The payload travels as the content of an encoding-1.1 encapsulation, as with aiocomm.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

import Ice  # type: ignore[import-not-found,unused-ignore]

from bench.peers.common import Call, main

ENCAPS_HEADER = struct.Struct("<iBB")  # size (header included), encoding major, minor
PROPERTIES = ["--Ice.Warn.Connections=0", "--Ice.MessageSizeMax=65536"]


class EchoBlobject(Ice.Blobject):  # type: ignore[misc]
    def ice_invoke(self, in_params: bytes, current: Any) -> tuple[bool, bytes]:
        return True, in_params


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    communicator = Ice.initialize(PROPERTIES)
    try:
        adapter = communicator.createObjectAdapterWithEndpoints("Bench", f"tcp -h {host} -p 0")
        adapter.add(EchoBlobject(), Ice.stringToIdentity("echo"))
        adapter.activate()
        yield adapter.getEndpoints()[0].getInfo().port
    finally:
        communicator.destroy()


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    communicator = Ice.initialize(PROPERTIES)
    loop = asyncio.get_running_loop()
    try:
        proxy = communicator.stringToProxy(f"echo:tcp -h {host} -p {port}")
        normal = Ice.OperationMode.Normal

        async def call(payload: bytes) -> bytes:
            params = ENCAPS_HEADER.pack(len(payload) + ENCAPS_HEADER.size, 1, 1) + payload
            future = proxy.ice_invokeAsync("echo", normal, params)
            ok, out = await Ice.wrap_future(future, loop=loop)
            if not ok:
                raise RuntimeError("echo raised a user exception")
            return bytes(out[ENCAPS_HEADER.size :])

        await loop.run_in_executor(None, proxy.ice_ping)  # connect outside the measurement
        yield call
    finally:
        communicator.destroy()


if __name__ == "__main__":
    main(serve, connect)
