"""``loop_reads=True`` (the default): the loop reads its own connections while
it runs, so a reply wakes the loop once, not a native thread that then wakes
the loop. Native threads read for it while it is blocked (see
test_blocked_loop.py, which runs with the option on and off). Off, they read
all. Every test runs over tcp and over ssl: once a TLS handshake is done (on
the native threads), the loop reads and decrypts the connection's records as
it reads tcp bytes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _transport import Transport

import aiocomm

CALLS = 200


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


def _delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after[key] - before[key]


@contextlib.asynccontextmanager
async def _echo_pair(loop_reads: bool, transport: Transport) -> AsyncIterator[
        tuple[aiocomm.Communicator, aiocomm.Communicator, aiocomm.Proxy]]:
    """A server with an echo servant and a connected client, both with `loop_reads`."""
    async with aiocomm.Communicator(loop_reads=loop_reads, tls=transport.server_tls) as server, \
            aiocomm.Communicator(loop_reads=loop_reads, tls=transport.client_tls) as client:
        adapter = server.create_object_adapter(transport.endpoint())
        adapter.add(Echo(), "echo")
        adapter.activate()
        proxy = client.proxy(f"echo:{adapter.endpoints[0]}")
        await proxy.invoke("echo", b"warm-up")  # connected; the loops took the reading
        yield server, client, proxy


async def _sequential_echoes(loop_reads: bool,
                             transport: Transport) -> tuple[dict[str, Any], list[bytes]]:
    async with _echo_pair(loop_reads, transport) as (server, client, proxy):
        client_before, server_before = client.stats(), server.stats()
        replies = [await proxy.invoke("echo", i.to_bytes(2, "big")) for i in range(CALLS)]
        client_after, server_after = client.stats(), server.stats()
        counts = {
            side: {key: _delta(after, before, key)
                   for key in ("inbox_wakeups", "loop_read_calls", "read_calls",
                               "read_handovers")}
            for side, after, before in (("client", client_after, client_before),
                                        ("server", server_after, server_before))
        }
        return counts, replies


async def test_replies_and_requests_are_read_by_the_loop_without_wakeups(
        transport: Transport) -> None:
    counts, replies = await _sequential_echoes(True, transport)
    assert replies == [i.to_bytes(2, "big") for i in range(CALLS)]
    for side in ("client", "server"):
        c = counts[side]
        # One message per read at one call in flight, read on the loop...
        assert c["loop_read_calls"] >= CALLS * 0.9, (side, c)
        # ...so the native threads hardly ever wake the loop.
        assert c["inbox_wakeups"] <= CALLS * 0.1, (side, c)
        # A loop descheduled past the 20 ms grace is read for (a handover), as
        # it should be: on a loaded 2-core machine under ASan, 1 of 200 was.
        # A few are fine; one per call would mean the loop never reads.
        assert c["read_handovers"] <= CALLS * 0.05, (side, c)


async def test_loop_reads_off_leaves_reads_to_native_threads(transport: Transport) -> None:
    # Over ssl this is the loop that runs no TLS code for its reads.
    counts, replies = await _sequential_echoes(False, transport)
    assert replies == [i.to_bytes(2, "big") for i in range(CALLS)]
    for side in ("client", "server"):
        c = counts[side]
        assert c["loop_read_calls"] == 0, (side, c)
        assert c["read_calls"] >= CALLS, (side, c)
        assert c["inbox_wakeups"] >= CALLS * 0.9, (side, c)


async def test_a_busy_loop_hands_reading_back_and_takes_it_again(transport: Transport) -> None:
    async with _echo_pair(True, transport) as (server, client, proxy):
        # Both ends live on this loop: stall it with a call in flight. The
        # request, or the reply if the loop answered before it stalled,
        # sits unread, and a reactor must take the reading back.
        def handovers() -> int:
            return server.stats()["read_handovers"] + client.stats()["read_handovers"]

        def loop_reads() -> int:
            return server.stats()["loop_read_calls"] + client.stats()["loop_read_calls"]

        call = asyncio.ensure_future(proxy.invoke("echo", b"during"))
        await asyncio.sleep(0)  # the request leaves
        # Stall the loop until a reactor has taken the reading back (it should
        # within ~20 ms; a loaded machine gets a generous deadline, not a
        # fixed sleep that may be too short or prove nothing).
        deadline = time.monotonic() + 15
        while handovers() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handovers() >= 1
        assert await call == b"during"
        before = loop_reads()
        for i in range(20):
            assert await proxy.invoke("echo", bytes([i])) == bytes([i])
        assert loop_reads() - before >= 36  # the loop reads both ends again


async def test_loop_reads_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="loop_reads"):
        aiocomm.Communicator(loop_reads=1)  # type: ignore[arg-type]
    async with aiocomm.Communicator(loop_reads=False) as comm:
        assert comm.options["loop_reads"] is False
    async with aiocomm.Communicator() as comm:
        # By default the loop reads (issue 13), unless the environment says 0.
        assert comm.options["loop_reads"] is (os.environ.get("AIOCOMM_LOOP_READS") != "0")


async def test_the_environment_switches_the_default_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOCOMM_LOOP_READS", "0")
    async with aiocomm.Communicator() as comm:
        assert comm.options["loop_reads"] is False
    monkeypatch.setenv("AIOCOMM_LOOP_READS", "1")
    async with aiocomm.Communicator() as comm:
        assert comm.options["loop_reads"] is True
    async with aiocomm.Communicator(loop_reads=False) as comm:
        assert comm.options["loop_reads"] is False  # an explicit choice wins
