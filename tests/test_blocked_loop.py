"""While the loop is blocked, native threads keep the connection alive: they
read, write what was queued, answer and send heartbeats; when the loop
resumes every reply arrives, in order. Destroy says goodbye on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest

import aiocomm

CLOSE = b"IceP\x01\x00\x01\x00\x04\x00\x0e\x00\x00\x00"
VALIDATE = b"IceP\x01\x00\x01\x00\x03\x00\x0e\x00\x00\x00"

# A server whose servant blocks its loop for 2.5 s; idle_timeout 1 s on both
# sides, so the connection only survives if native threads heartbeat for it.
BLOCKING_SERVER = textwrap.dedent("""
    import asyncio, sys, time
    import aiocomm

    class Blocker:
        def block(self, payload, current):
            time.sleep(2.5)          # a slow synchronous servant: the loop is stuck
            return payload
        def echo(self, payload, current):
            return payload
        def count(self, payload, current):
            return str(Blocker.seen).encode()
        seen = 0
        comm = None
        def handovers(self, payload, current):
            return str(Blocker.comm.stats()["read_handovers"]).encode()
        def note(self, payload, current):
            Blocker.seen += 1

    async def main():
        async with aiocomm.Communicator(idle_timeout=1.0,
                                        loop_reads=sys.argv[2] == "loop_reads") as comm:
            Blocker.comm = comm
            adapter = comm.create_object_adapter()
            adapter.add(Blocker(), "b")
            adapter.activate()
            print(adapter.endpoints[0], flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    if sys.argv[1] == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
""")


@contextlib.asynccontextmanager
async def blocking_server(loop_reads: bool) -> AsyncIterator[str]:
    """Runs BLOCKING_SERVER on this test's loop kind; yields its endpoint."""
    loop_name = "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
    reads = "loop_reads" if loop_reads else "io_threads"
    server = subprocess.Popen([sys.executable, "-c", BLOCKING_SERVER, loop_name, reads],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        endpoint = await asyncio.get_running_loop().run_in_executor(None, server.stdout.readline)
        yield endpoint.strip()
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout:
            server.stdout.close()



# Both ways of reading: by the I/O threads only, and by the loop itself,
# which the I/O threads must then take over while it is blocked.
both_ways = pytest.mark.parametrize("loop_reads", [False, True], ids=["io_threads", "loop_reads"])


@both_ways
async def test_blocked_server_loop_keeps_connection_and_order(loop_reads: bool) -> None:
    async with blocking_server(loop_reads) as endpoint, aiocomm.Communicator(
            idle_timeout=1.0, invocation_timeout=20.0, loop_reads=loop_reads) as client:
        prx = client.proxy(f"b:{endpoint}")
        await prx.ping()
        blocked = asyncio.ensure_future(prx.invoke("block", b"first"))
        await asyncio.sleep(0.2)
        # While the server's loop is stuck: 2 MB of oneways must still be
        # written (its native threads read them), and twoways queue up.
        oneway = prx.oneway()
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(oneway.invoke("note", b"x" * 4096) for _ in range(500))), 2.0)
        assert time.monotonic() - started < 2.0
        later = [asyncio.ensure_future(prx.invoke("echo", str(i).encode())) for i in range(200)]
        # More than idle_timeout passes with the loop blocked: heartbeats
        # from the server's native threads keep our side from closing.
        assert await asyncio.wait_for(blocked, 10) == b"first"
        assert [await c for c in later] == [str(i).encode() for i in range(200)]
        assert await prx.invoke("count") == b"500"
        # A server loop that reads its sockets had a reactor read for it.
        handovers = int(await prx.invoke("handovers"))
        assert handovers >= 1 if loop_reads else handovers == 0
        assert client.stats()["connections"] == 1, "the connection was re-opened"


@both_ways
async def test_blocked_client_loop_keeps_connection_and_replies(loop_reads: bool) -> None:
    # The client's own loop is stuck for 2.5 s (idle_timeout 1 s on both
    # sides) while the server answers 2,000 calls of 4 KiB: the client's
    # native threads read them all and keep the connection alive, and every
    # reply is delivered once the loop resumes.
    async with blocking_server(loop_reads) as endpoint, aiocomm.Communicator(
            idle_timeout=1.0, invocation_timeout=20.0, loop_reads=loop_reads) as client:
        prx = client.proxy(f"b:{endpoint}")
        await prx.ping()
        payloads = [bytes([i % 256]) * 4096 for i in range(2000)]
        calls = [asyncio.ensure_future(prx.invoke("echo", p)) for p in payloads]
        await asyncio.sleep(0)  # let the requests go out
        time.sleep(2.5)  # block this loop
        assert await asyncio.wait_for(asyncio.gather(*calls), 20) == payloads
        stats = client.stats()
        assert stats["connections"] == 1, "the connection was re-opened"
        assert stats["heartbeats_sent"] >= 1
        # A loop that reads its socket had a reactor read for it here.
        assert stats["read_handovers"] >= (1 if loop_reads else 0)
        if loop_reads:
            # The loop reads again once it resumes. What it read before may be
            # nothing: on a loaded machine a loop stalled past the 20 ms grace
            # had even the ping's reply read for it, and every reply above came
            # while it was blocked. So call until it reads one itself.
            for i in range(200):
                if client.stats()["loop_read_calls"] > 0:
                    break
                assert await prx.invoke("echo", b"%d" % i) == b"%d" % i
            assert client.stats()["loop_read_calls"] > 0
        else:
            assert stats["loop_read_calls"] == 0


async def test_destroy_sends_close_connection_to_clients() -> None:
    server = aiocomm.Communicator()
    adapter = server.create_object_adapter()
    adapter.activate()
    port = int(adapter.endpoints[0].split()[-1])
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert await loop.run_in_executor(None, sock.recv, 14) == VALIDATE
        await server.destroy()
        data = await loop.run_in_executor(None, sock.recv, 100)
        assert data == CLOSE
    finally:
        sock.close()


async def test_destroy_sends_close_connection_to_servers() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    loop = asyncio.get_running_loop()
    client = aiocomm.Communicator(close_timeout=5.0)
    call = asyncio.ensure_future(client.proxy(f"x:tcp -h 127.0.0.1 -p {port}").invoke("op"))
    conn, _ = await loop.run_in_executor(None, listener.accept)
    try:
        conn.sendall(VALIDATE)
        header = await loop.run_in_executor(None, conn.recv, 14)
        assert header[8] == 0  # the request, once validated
        (size,) = struct.unpack_from("<i", header, 10)
        await loop.run_in_executor(None, conn.recv, size - 14)
        destroying = asyncio.ensure_future(client.destroy())
        # The client fails its call, says close-connection, and waits for us.
        assert await loop.run_in_executor(None, conn.recv, 14) == CLOSE
        await asyncio.sleep(0.1)
        assert not destroying.done()
        conn.close()
        await asyncio.wait_for(destroying, 5)
        with pytest.raises(aiocomm.CommunicatorDestroyedError):
            await call
    finally:
        conn.close()
        listener.close()
