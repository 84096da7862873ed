"""Large payloads: 64 KiB to 8 MiB echoed byte for byte, many in flight,
with the loop reading its sockets and without. A reply the loop reads is
read straight into the ``bytes`` the caller receives (``owned_bodies``,
``direct_body_reads`` in ``stats()``); a reactor that takes the reading
over while the loop is blocked finishes such a body, and a destroy or a
lost peer in the middle of one frees it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import select
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from _peers import RUN_MAIN_ON_LOOP

import aiocomm

KIB = 1024
MIB = 1024 * 1024
SIZE_MAX = 16 * MIB
VALIDATE = b"IceP\x01\x00\x01\x00\x03\x00\x0e\x00\x00\x00"

both_ways = pytest.mark.parametrize("loop_reads", [False, True], ids=["io_threads", "loop_reads"])


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


def pattern(size: int, seed: int) -> bytes:
    """`size` bytes that differ at every offset and between seeds: a body
    shifted, truncated or mixed with another one compares unequal."""
    block = hashlib.sha256(seed.to_bytes(8, "little")).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(block + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


@contextlib.asynccontextmanager
async def echo_pair(loop_reads: bool) -> AsyncIterator[
        tuple[aiocomm.Communicator, aiocomm.Communicator, aiocomm.Proxy]]:
    async with aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX) as server, \
            aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX,
                                 invocation_timeout=60.0) as client:
        adapter = server.create_object_adapter("tcp -h 127.0.0.1 -p 0")
        adapter.add(Echo(), "echo")
        adapter.activate()
        proxy = client.proxy(f"echo:{adapter.endpoints[0]}")
        await proxy.invoke("echo", b"warm-up")
        yield server, client, proxy


@both_ways
@pytest.mark.parametrize("size", [64 * KIB, MIB, 4 * MIB], ids=["64KiB", "1MiB", "4MiB"])
async def test_large_echoes_arrive_byte_for_byte(loop_reads: bool, size: int) -> None:
    async with echo_pair(loop_reads) as (_, client, proxy):
        payloads = [pattern(size, i) for i in range(8)]
        for _ in range(2):
            replies = await asyncio.wait_for(
                asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), 60)
            assert all(type(r) is bytes for r in replies)
            assert replies == payloads
        # One at a time too: no reply overlaps another in the socket.
        for p in payloads[:3]:
            assert await proxy.invoke("echo", p) == p
        stats = client.stats()
        if not loop_reads:
            # Only the loop makes bodies as Python objects.
            assert stats["owned_bodies"] == 0 and stats["direct_body_reads"] == 0


async def test_the_loop_reads_large_replies_into_their_bytes() -> None:
    async with echo_pair(True) as (_, client, proxy):
        before = client.stats()
        payload = pattern(MIB, 7)
        for _ in range(5):
            assert await proxy.invoke("echo", payload) == payload
        after = client.stats()
        # The loop read (nearly) every one of them; a reactor may have read
        # one for it had the loop been stalled more than 20 ms.
        assert after["owned_bodies"] - before["owned_bodies"] >= 1
        assert after["direct_body_reads"] > before["direct_body_reads"]
        # Small replies keep the pooled path.
        assert await proxy.invoke("echo", b"x" * 100) == b"x" * 100
        assert client.stats()["owned_bodies"] == after["owned_bodies"]


# 64 calls of 1 MiB in flight once deadlocked: back-pressure stopped the
# client reading replies because its own requests were queued, while the
# server had stopped reading requests because its replies were. Run in a
# fresh interpreter with a hard timeout, in one process and across two.
MANY_IN_FLIGHT = """
import asyncio, subprocess, sys
import aiocomm

LOOP, READS, TOPOLOGY = sys.argv[1], sys.argv[2] == "loop_reads", sys.argv[3]
SIZE_MAX = 8 << 20

class Echo:
    def echo(self, payload, current):
        return payload

async def serve():
    async with aiocomm.Communicator(loop_reads=READS, message_size_max=SIZE_MAX) as server:
        adapter = server.create_object_adapter("tcp -h 127.0.0.1 -p 0")
        adapter.add(Echo(), "echo")
        adapter.activate()
        print(adapter.endpoints[0], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

async def call(endpoint):
    async with aiocomm.Communicator(loop_reads=READS, message_size_max=SIZE_MAX) as client:
        proxy = client.proxy(f"echo:{endpoint}")
        payloads = [bytes([i]) * 1024 + bytes(range(256)) * 4088 + bytes([255 - i]) * 1024
                    for i in range(64)]
        assert all(len(p) == 1 << 20 for p in payloads)
        for _ in range(3):
            replies = await asyncio.gather(*(proxy.invoke("echo", p) for p in payloads))
            assert replies == payloads
        print("OK", flush=True)

async def main():
    if TOPOLOGY == "serve":
        await serve()
    elif TOPOLOGY == "two_processes":
        server = subprocess.Popen([sys.executable, __file__, LOOP, sys.argv[2], "serve"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            loop = asyncio.get_running_loop()
            endpoint = await loop.run_in_executor(None, server.stdout.readline)
            await call(endpoint.strip())
        finally:
            server.stdin.close()
            server.wait(20)
    else:
        async with aiocomm.Communicator(loop_reads=READS, message_size_max=SIZE_MAX) as server:
            adapter = server.create_object_adapter("tcp -h 127.0.0.1 -p 0")
            adapter.add(Echo(), "echo")
            adapter.activate()
            await call(adapter.endpoints[0])
""" + RUN_MAIN_ON_LOOP


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("reads", ["loop_reads", "io_threads"])
@pytest.mark.parametrize("topology", ["one_process", "two_processes"])
def test_64_calls_of_1_mib_in_flight_complete(
        run_script: Callable[..., Any], loop: str, reads: str, topology: str) -> None:
    result = run_script(MANY_IN_FLIGHT, timeout=60.0, args=(loop, reads, topology))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


# --- a scripted server: the test decides when each part of a reply goes out


class ScriptedServer:
    """Accepts one connection, validates it, reads one request and answers
    it with a reply of `payload`, sent in two parts: `front` bytes of the
    message, then (once `go` is set) the rest, or nothing when `vanish`."""

    def __init__(self, payload: bytes, front: int, vanish: bool = False) -> None:
        self.payload = payload
        self.front = front
        self.vanish = vanish
        self.go = threading.Event()
        self.front_sent = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        # Built here, not on the server's thread: a test that traces
        # allocations sees only the client's.
        reply_body = (b"\0\0\0\0" + b"\x00" + struct.pack("<i", len(payload) + 6) + b"\x01\x01"
                      + payload)
        self.message = bytearray(b"IceP\x01\x00\x01\x00\x02\x00"
                                 + struct.pack("<i", 14 + len(reply_body)) + reply_body)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _recv_exact(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the client closed")
            data += chunk
        return data

    def _run(self) -> None:
        try:
            self.listener.settimeout(30)
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(30)
                conn.sendall(VALIDATE)
                header = self._recv_exact(conn, 14)
                size = struct.unpack_from("<i", header, 10)[0]
                body = self._recv_exact(conn, size - 14)
                self.message[14:18] = body[:4]  # the request id
                view = memoryview(self.message)
                conn.sendall(view[:self.front])
                self.front_sent.set()
                deadline = time.monotonic() + 30
                while not self.go.is_set():
                    # The client closing (destroyed): so does this peer, as any would.
                    if select.select([conn], [], [], 0.01)[0] or time.monotonic() > deadline:
                        return
                if self.vanish:
                    return
                conn.sendall(view[self.front:])
                # Stay until the client has gone.
                with contextlib.suppress(OSError):
                    conn.recv(1)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.listener.close()

    def join(self) -> None:
        self.go.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@contextlib.contextmanager
def scripted(payload: bytes, front: int, vanish: bool = False) -> Iterator[ScriptedServer]:
    server = ScriptedServer(payload, front, vanish)
    try:
        yield server
    finally:
        server.join()


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Waits for `condition`, polled between loop turns, with a hard timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.005)


def block_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Blocks this thread (the loop's) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        time.sleep(0.005)


async def test_a_reactor_finishes_a_body_the_blocked_loop_began() -> None:
    # The loop reads the front of a 4 MiB reply (its body is then being read
    # into its bytes), and blocks; the rest arrives meanwhile, and the
    # reactor that takes the reading over reads it into the same body.
    payload = pattern(4 * MIB, 11)
    with scripted(payload, front=100 * KIB) as server:
        async with aiocomm.Communicator(loop_reads=True, message_size_max=SIZE_MAX,
                                        invocation_timeout=60.0) as client:
            proxy = client.proxy(f"x:tcp -h 127.0.0.1 -p {server.port}")
            call = asyncio.ensure_future(proxy.invoke("get", b""))
            await until(lambda: client.stats()["owned_bodies"] >= 1)
            before = client.stats()
            assert before["messages_in"] == 1  # validate-connection: the reply is half read
            server.go.set()
            # Blocked: only a reactor can read the rest, once it sees the loop stalled.
            block_until(lambda: client.stats()["messages_in"] == 2)
            after = client.stats()
            assert after["read_handovers"] > before["read_handovers"]
            assert after["owned_bodies"] == 1  # the body the loop began
            reply = await asyncio.wait_for(call, 20)
            assert reply == payload
        assert server.error is None


@pytest.mark.parametrize("ending", ["destroy", "peer_vanishes"])
async def test_a_body_half_read_is_freed_when_the_connection_ends(ending: str) -> None:
    # 8 MiB half read into its bytes when the communicator is destroyed or
    # the peer goes away: the call fails, and the body is freed (on the
    # loop: the reactor that closes the connection cannot release it).
    size = 8 * MIB
    payload = pattern(size, 12)
    with scripted(payload, front=MIB, vanish=ending == "peer_vanishes") as server:
        tracemalloc.start()
        try:
            gc.collect()
            baseline = tracemalloc.get_traced_memory()[0]
            client = aiocomm.Communicator(loop_reads=True, message_size_max=SIZE_MAX,
                                          invocation_timeout=60.0)
            try:
                proxy = client.proxy(f"x:tcp -h 127.0.0.1 -p {server.port}")
                call = asyncio.ensure_future(proxy.invoke("get", b""))
                await until(lambda: client.stats()["owned_bodies"] >= 1)
                # The body exists, as the Python object it is read into.
                assert tracemalloc.get_traced_memory()[0] - baseline >= size
                if ending == "destroy":
                    await client.destroy()
                    with pytest.raises(aiocomm.CommunicatorDestroyedError):
                        await call
                else:
                    server.go.set()  # the server closes without the rest
                    with pytest.raises(aiocomm.ConnectionLostError):
                        await asyncio.wait_for(call, 20)
            finally:
                await client.destroy()
            gc.collect()
            assert tracemalloc.get_traced_memory()[0] - baseline < size // 2
        finally:
            tracemalloc.stop()
    assert server.error is None


@both_ways
async def test_destroy_during_many_large_transfers(loop_reads: bool) -> None:
    async with aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX) as server:
        adapter = server.create_object_adapter("tcp -h 127.0.0.1 -p 0")
        adapter.add(Echo(), "echo")
        adapter.activate()
        client = aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX)
        proxy = client.proxy(f"echo:{adapter.endpoints[0]}")
        payloads = [pattern(4 * MIB, i) for i in range(16)]
        calls = [asyncio.ensure_future(proxy.invoke("echo", p)) for p in payloads]
        # Destroy once the first replies are coming back: others are then in
        # every state, from queued to half read.
        await asyncio.wait_for(asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED), 60)
        await asyncio.wait_for(client.destroy(), 30)
        results = await asyncio.gather(*calls, return_exceptions=True)
        for payload, result in zip(payloads, results, strict=True):
            if isinstance(result, bytes):
                assert result == payload
            else:
                assert isinstance(result, (aiocomm.CommunicatorDestroyedError,
                                           aiocomm.ConnectionLostError)), repr(result)
        assert any(isinstance(r, bytes) for r in results)
