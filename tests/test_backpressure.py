"""Back-pressure: a server stops reading a connection that has too much in
flight, and that pause is never mistaken for a slow or silent peer; over tcp
and over ssl, where what the session already decrypted waits with it."""

from __future__ import annotations

import asyncio

from _transport import Transport

import aiocomm


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


async def test_paused_reading_is_not_a_slow_or_silent_peer(transport: Transport) -> None:
    # The adapter is not active, so requests pile up as dispatches in flight
    # until the server stops reading; far longer than the read and idle
    # timeouts pass before it resumes, and nothing may be closed for that.
    async with aiocomm.Communicator(read_timeout=0.3, idle_timeout=1.0,
                                    tls=transport.server_tls) as server:
        adapter = server.create_object_adapter(transport.endpoint())
        adapter.add(Echo(), "echo")
        async with aiocomm.Communicator(idle_timeout=1.0, invocation_timeout=60.0,
                                        tls=transport.client_tls) as client:
            prx = client.proxy(f"echo:{adapter.endpoints[0]}")
            payloads = [i.to_bytes(4, "little") * 25 for i in range(20000)]
            calls = [asyncio.ensure_future(prx.invoke("echo", p)) for p in payloads]
            await asyncio.sleep(2.0)
            assert server.stats()["read_pauses"] >= 1
            assert server.stats()["protocol_errors"] == 0
            adapter.activate()
            assert await asyncio.wait_for(asyncio.gather(*calls), 60) == payloads
            assert client.stats()["connections"] == 1
            assert server.stats()["protocol_errors"] == 0
