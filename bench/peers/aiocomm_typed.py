"""aiocomm with typed interfaces: ``aiocomm.slice.load("bench/typed_echo.ice")``.

Server: a ``Bench.Echo`` servant returning its argument; client: ``await prx.echoRec(r)``
/ ``await prx.echoRecs(rs)``. See ``typed_common.py`` for what ``--payloads`` means here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiocomm
import aiocomm.slice
from bench.peers.aiocomm import port_of
from bench.peers.common import Call, main
from bench.peers.typed_common import SLICE, make_records

Bench: Any = aiocomm.slice.load(SLICE).Bench


class EchoI(Bench.Echo):  # type: ignore[misc]
    def echoRec(self, r: Any, current: aiocomm.Current) -> Any:
        return r

    def echoRecs(self, rs: list[Any], current: aiocomm.Current) -> list[Any]:
        return rs


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[int]:
    async with aiocomm.Communicator() as communicator:
        adapter = communicator.create_object_adapter(f"tcp -h {host} -p 0")
        adapter.add(EchoI(), "echo")
        adapter.activate()
        yield port_of(adapter.endpoints[0])


@contextlib.asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Call]:
    async with aiocomm.Communicator() as communicator:
        proxy = Bench.EchoPrx(communicator.proxy(f"echo:tcp -h {host} -p {port}"))
        await proxy.proxy.ping()  # connect outside the measurement
        cache: dict[int, list[Any]] = {}

        async def call(payload: bytes) -> bytes:
            count = len(payload)
            recs = cache.get(count)
            if recs is None:
                recs = cache[count] = make_records(count, Bench.Rec, Bench.Kind.medium)
            if count == 1:
                got = [await proxy.echoRec(recs[0])]
            else:
                got = await proxy.echoRecs(recs)
            if len(got) != count or got[-1].c != recs[-1].c or got[-1].s2 != recs[-1].s2:
                raise RuntimeError("typed echo returned other records")
            return payload

        call.counters = communicator.stats  # type: ignore[attr-defined]
        yield call


if __name__ == "__main__":
    main(serve, connect)
