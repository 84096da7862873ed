"""ZeroC Ice for Python (3.7, or 3.8) with code that its slice2py generates from
``bench/typed_echo.ice`` when the peer starts.

Server: a ``Bench.Echo`` servant returning its argument (Ice's thread pool dispatches).
Client: ``echoRecAsync`` / ``echoRecsAsync``: Ice 3.7's futures wrapped for asyncio by
``Ice.wrap_future``, Ice 3.8's awaited directly (its asyncio event-loop adapter).
See ``typed_common.py`` for what ``--payloads`` means here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import Ice  # type: ignore[import-not-found,unused-ignore]

from bench.peers.common import Call, main
from bench.peers.typed_common import import_generated, make_records

V38 = Ice.intVersion() >= 30800
if V38:  # the wheel's compiler is its slice2py module
    import_generated([sys.executable, "-c", "import sys; from slice2py import main; "
                      "sys.exit(main())"])
else:
    import_generated(["/usr/bin/slice2py" if os.path.exists("/usr/bin/slice2py") else "slice2py"])
import Bench  # type: ignore[import-not-found]  # noqa: E402

PROPERTIES = {"Ice.Warn.Connections": "0", "Ice.MessageSizeMax": "65536"}


def initialize(loop: asyncio.AbstractEventLoop | None = None) -> Any:
    props = Ice.createProperties()
    for key, value in PROPERTIES.items():
        props.setProperty(key, value)
    init_data = Ice.InitializationData()
    init_data.properties = props
    if V38:
        if loop is not None:
            init_data.eventLoopAdapter = Ice.asyncio.EventLoopAdapter(loop)
        return Ice.initialize(initData=init_data)
    return Ice.initialize(init_data)


class EchoI(Bench.Echo):  # type: ignore[misc]
    def echoRec(self, r: Any, current: Any = None) -> Any:
        return r

    def echoRecs(self, rs: Any, current: Any = None) -> Any:
        return rs


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    communicator = initialize()
    try:
        adapter = communicator.createObjectAdapterWithEndpoints("Bench", f"tcp -h {host} -p 0")
        adapter.add(EchoI(), Ice.stringToIdentity("echo"))
        adapter.activate()
        yield adapter.getEndpoints()[0].getInfo().port
    finally:
        communicator.destroy()


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    communicator = initialize(loop)
    try:
        proxy = Bench.EchoPrx.uncheckedCast(
            communicator.stringToProxy(f"echo:tcp -h {host} -p {port}")
        )
        cache: dict[int, list[Any]] = {}

        def wait(future: Any) -> Any:
            return future if V38 else Ice.wrap_future(future, loop=loop)

        async def call(payload: bytes) -> bytes:
            count = len(payload)
            recs = cache.get(count)
            if recs is None:
                recs = cache[count] = make_records(count, Bench.Rec, Bench.Kind.medium)
            if count == 1:
                got = [await wait(proxy.echoRecAsync(recs[0]))]
            else:
                got = await wait(proxy.echoRecsAsync(recs))
            if len(got) != count or got[-1].c != recs[-1].c or got[-1].s2 != recs[-1].s2:
                raise RuntimeError("typed echo returned other records")
            return payload

        await loop.run_in_executor(None, proxy.ice_ping)  # connect outside the measurement
        yield call
    finally:
        communicator.destroy()


if __name__ == "__main__":
    main(serve, connect)
