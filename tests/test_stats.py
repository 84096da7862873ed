"""stats(): the counters that explain performance, and what they must show under load."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest

import aiocomm

EXPECTED_KEYS = {
    "connections",
    "inbox_wakeups",
    "native_gil_acquisitions",
    "pending_invocations",
}

N = 2000


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


async def test_stats_values_are_ints(comm: aiocomm.Communicator) -> None:
    stats = comm.stats()
    assert isinstance(stats, dict)
    assert EXPECTED_KEYS <= set(stats)
    for key, value in stats.items():
        assert isinstance(key, str)
        assert type(value) is int, f"{key} is {type(value).__name__}"
        assert value >= 0, key
    assert stats["connections"] == 0
    assert stats["pending_invocations"] == 0
    # A copy each time: mutating it changes nothing.
    stats["connections"] = 99
    assert comm.stats()["connections"] == 0


async def test_stats_follow_traffic(comm: aiocomm.Communicator) -> None:
    adapter = comm.create_object_adapter()
    proxy = adapter.add(Echo(), "echo")
    adapter.activate()
    assert await proxy.invoke("echo", b"x") == b"x"
    stats = comm.stats()
    assert all(type(v) is int for v in stats.values())
    assert stats["connections"] == 2  # the client's and the server's end
    # The messages reached the loop: woken by the I/O threads, or read by
    # the loop itself (loop_reads).
    assert stats["inbox_wakeups"] + stats["loop_read_calls"] >= 1
    assert stats["pending_invocations"] == 0


@pytest.fixture
async def echo_pair() -> AsyncIterator[tuple[aiocomm.Communicator, aiocomm.Communicator,
                                             aiocomm.Proxy]]:
    """A server with an echo servant, a client, and the client's proxy (connected)."""
    server = aiocomm.Communicator()
    client = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        adapter.add(Echo(), "echo")
        adapter.activate()
        proxy = client.proxy(f"echo:{adapter.endpoints[0]}")
        await proxy.invoke("echo", b"warm-up")
        yield server, client, proxy
    finally:
        await client.destroy()
        await server.destroy()


async def test_pipelined_calls_batch_wakeups_without_gil(
        echo_pair: tuple[aiocomm.Communicator, aiocomm.Communicator, aiocomm.Proxy]) -> None:
    server, client, proxy = echo_pair
    server_before, client_before = server.stats(), client.stats()

    payloads = [i.to_bytes(4, "little") for i in range(N)]
    results = await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), 30)
    assert results == payloads

    server_after, client_after = server.stats(), client.stats()
    assert client_after["connections"] == 1
    assert server_after["connections"] == 1
    # Native threads never took the GIL for these requests and replies.
    assert server_after["native_gil_acquisitions"] == server_before["native_gil_acquisitions"]
    assert client_after["native_gil_acquisitions"] == client_before["native_gil_acquisitions"]
    # Deliveries reached the loop in batches: fewer wake-ups than messages,
    # or with loop_reads, fewer reads on the loop than messages.
    def arrivals(after: dict[str, int], before: dict[str, int]) -> int:
        return sum(after[k] - before[k] for k in ("inbox_wakeups", "loop_read_calls"))

    assert 0 < arrivals(server_after, server_before) < N, server_after
    assert 0 < arrivals(client_after, client_before) < N, client_after


def test_native_gil_acquisitions_zero_in_fresh_process(
        run_script: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = run_script(f"""
        import asyncio, json
        import aiocomm

        class Echo:
            def echo(self, payload, current):
                return payload

        async def main():
            server = aiocomm.Communicator()
            client = aiocomm.Communicator()
            adapter = server.create_object_adapter()
            adapter.add(Echo(), "echo")
            adapter.activate()
            proxy = client.proxy(f"echo:{{adapter.endpoints[0]}}")
            payloads = [i.to_bytes(4, "little") for i in range({N})]
            results = await asyncio.gather(*(proxy.invoke("echo", p) for p in payloads))
            assert results == payloads
            print(json.dumps({{"server": server.stats(), "client": client.stats()}}))
            await client.destroy()
            await server.destroy()
            assert client.is_destroyed and server.is_destroyed
            # The end of destroy reached the loop without a native GIL take.
            print(json.dumps({{"after_destroy": aiocomm._core.native_gil_acquisitions()}}))

        asyncio.run(main())
    """, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    stats = json.loads(lines[-2])
    for side in ("server", "client"):
        assert stats[side]["native_gil_acquisitions"] == 0, stats[side]
        assert stats[side]["inbox_wakeups"] < N, stats[side]
    # The counter is live (tests/test_gil_rules.py), so 0 means no native
    # thread took the GIL, destroy completions included.
    assert json.loads(lines[-1]) == {"after_destroy": 0}


async def test_writes_coalesce_under_load_and_go_direct_when_idle(
        echo_pair: tuple[aiocomm.Communicator, aiocomm.Communicator, aiocomm.Proxy]) -> None:
    server, client, proxy = echo_pair
    # One call at a time: nothing else is awaited, so each request leaves at
    # once by its own write, with no batch to wait for.
    before = client.stats()
    for i in range(20):
        assert await proxy.invoke("echo", bytes([i])) == bytes([i])
    after = client.stats()
    assert after["direct_writes"] - before["direct_writes"] == 20
    assert after["write_calls"] - before["write_calls"] == 20

    # 200 calls started in one loop iteration share a few writes (one batch,
    # written in slices), and the server answers them in a few.
    client_before, server_before = client.stats(), server.stats()
    calls = 200
    payloads = [i.to_bytes(2, "little") for i in range(calls)]
    assert await asyncio.wait_for(
        asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), 30) == payloads
    client_after, server_after = client.stats(), server.stats()
    client_writes = client_after["write_calls"] - client_before["write_calls"]
    server_writes = server_after["write_calls"] - server_before["write_calls"]
    assert 1 <= client_writes <= calls // 32 + 2, client_writes
    assert 1 <= server_writes < calls // 4, server_writes


async def test_large_messages_reuse_pooled_buffers_without_mixing_contents(
        echo_pair: tuple[aiocomm.Communicator, aiocomm.Communicator, aiocomm.Proxy]) -> None:
    server, client, proxy = echo_pair
    # Sizes across every pooled class and past it, each call's bytes its own:
    # a recycled buffer that kept a previous body, or was handed to two
    # messages at once, would show up as a wrong echo.
    sizes = [1000, 1024, 1500, 4096, 5000, 16384, 40000, 65536, 70000, 200_000]
    for round_number in range(3):
        payloads = [
            bytes([(i + round_number) % 251]) * size + i.to_bytes(4, "little")
            for i, size in enumerate(sizes * 8)
        ]
        replies = await asyncio.wait_for(
            asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), 30)
        assert replies == payloads
    bound = 7 * 256 * 1024  # seven size classes, 256 KiB retained in each
    for side in (server, client):
        pooled = side.stats()["pooled_buffer_bytes"]
        assert 0 < pooled <= bound, pooled
