"""Large requests written from the caller's buffer (issue 13, item 4).

A payload of 16 KiB or more that cannot change (an exact ``bytes``, or a
memoryview of one) is not copied into the encoded request: the request is
queued as its small encoded head plus the caller's bytes, held by reference
until the request is written and can no longer be retried, then released
(``borrowed_request_bodies`` in ``stats()`` counts them). A bytearray or a
writable view may change once invoke() returns, so it is still copied: the
server must see what the caller passed, whatever it does afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _peers import CLOSE, RUN_MAIN_ON_LOOP, VALIDATE, recv_message

import aiocomm
from aiocomm import TLS

KIB = 1024
MIB = 1024 * 1024
SIZE_MAX = 16 * MIB
LEND_MIN = 16 * KIB  # py_payload.h's lend_min

both_ways = pytest.mark.parametrize("loop_reads", [False, True], ids=["io_threads", "loop_reads"])


class Echo:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload

    def keep(self, payload: bytes, current: aiocomm.Current) -> None:
        self.received.append(payload)


def pattern(size: int, seed: int) -> bytes:
    """`size` bytes that differ at every offset and between seeds."""
    block = hashlib.sha256(seed.to_bytes(8, "little")).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(block + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def borrowed(comm: aiocomm.Communicator) -> int:
    return comm.stats()["borrowed_request_bodies"]


@contextlib.asynccontextmanager
async def communicators(loop_reads: bool, **client_options: Any) -> AsyncIterator[
        tuple[aiocomm.Communicator, aiocomm.Communicator]]:
    """A server and a client communicator, for messages up to SIZE_MAX."""
    async with aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX) as server, \
            aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX,
                                 invocation_timeout=60.0, **client_options) as client:
        yield server, client


def serve_echo(server: aiocomm.Communicator, client: aiocomm.Communicator, *,
               activate: bool = True) -> tuple[Echo, aiocomm.ObjectAdapter, aiocomm.Proxy]:
    """An Echo servant on a new adapter of `server`, and the client's proxy to it."""
    servant = Echo()
    adapter = server.create_object_adapter("tcp -h 127.0.0.1 -p 0")
    adapter.add(servant, "echo")
    if activate:
        adapter.activate()
    return servant, adapter, client.proxy(f"echo:{adapter.endpoints[0]}")


@contextlib.asynccontextmanager
async def echo_pair(loop_reads: bool, **client_options: Any) -> AsyncIterator[
        tuple[Echo, aiocomm.Communicator, aiocomm.Proxy]]:
    async with communicators(loop_reads, **client_options) as (server, client):
        servant, _, proxy = serve_echo(server, client)
        await proxy.invoke("echo", b"warm-up")
        yield servant, client, proxy


def refs_of(items: list[bytes], index: int) -> Callable[[], int]:
    """The reference count of ``items[index]``, counted the same way each time."""
    return lambda: sys.getrefcount(items[index])


async def until_released(proxy: aiocomm.Proxy, refs: Callable[[], int], baseline: int) -> None:
    """Round trips until `refs()` (a reference count, taken as `baseline`
    was) is back to `baseline`. A request written by a reactor is let go
    there without the GIL and released at the loop's next drain, which a
    round trip brings."""
    for _ in range(500):
        if refs() == baseline:
            return
        await proxy.invoke("echo", b"x")
    assert refs() == baseline


@both_ways
@pytest.mark.parametrize("size", [64 * KIB, MIB, 4 * MIB], ids=["64KiB", "1MiB", "4MiB"])
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview_of_bytes",
                                  "memoryview_of_bytearray"])
async def test_large_requests_arrive_byte_for_byte(loop_reads: bool, size: int, kind: str) -> None:
    async with echo_pair(loop_reads) as (_, client, proxy):
        originals = [pattern(size, i) for i in range(4)]
        # Each payload is something else than a lone `bytes` where the kind
        # says so; the backing objects are kept to mutate them.
        backing: list[Any] = []
        payloads: list[Any] = []
        for original in originals:
            if kind == "bytes":
                payloads.append(original)
            elif kind == "bytearray":
                backing.append(bytearray(original))
                payloads.append(backing[-1])
            elif kind == "memoryview_of_bytes":
                framed = b"<" * 7 + original + b">" * 9
                backing.append(framed)
                payloads.append(memoryview(framed)[7:7 + size])
            else:
                framed_array = bytearray(b"<" * 7 + original + b">" * 9)
                backing.append(framed_array)
                payloads.append(memoryview(framed_array)[7:7 + size])
        before = borrowed(client)
        calls = [proxy.invoke("echo", p) for p in payloads]
        # Invoke has returned: what the caller does now must not change
        # what the server receives.
        if kind == "bytearray":
            for array in backing:
                array[:] = b"\xee" * len(array)
        elif kind == "memoryview_of_bytearray":
            for view in payloads:
                view[:] = b"\xee" * len(view)
        elif kind == "memoryview_of_bytes":
            for view in payloads:
                view.release()  # the request holds the bytes, not the view
        replies = await asyncio.wait_for(asyncio.gather(*calls), 60)
        assert replies == originals
        lent = kind in ("bytes", "memoryview_of_bytes")
        assert borrowed(client) - before == (len(payloads) if lent else 0)


@both_ways
async def test_64_requests_of_1_mib_in_flight(loop_reads: bool) -> None:
    # Many at once: the deferred (batched) sends queue them together, and
    # most are written by a reactor once the socket is full.
    async with echo_pair(loop_reads) as (_, client, proxy):
        originals = [pattern(MIB, 100 + i) for i in range(64)]
        baselines = [refs_of(originals, i)() for i in range(len(originals))]
        payloads: list[Any] = [
            p if i % 3 == 0 else memoryview(p) if i % 3 == 1 else bytearray(p)
            for i, p in enumerate(originals)]
        lent = sum(1 for p in payloads if not isinstance(p, bytearray))
        before = borrowed(client)
        for _ in range(2):
            replies = await asyncio.wait_for(
                asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), 60)
            assert replies == originals
        assert borrowed(client) - before == 2 * lent
        del payloads, replies
        for i in range(len(originals)):
            await until_released(proxy, refs_of(originals, i), baselines[i])


@both_ways
async def test_a_lent_payload_is_held_until_its_reply_then_released(loop_reads: bool) -> None:
    async with echo_pair(loop_reads) as (_, client, proxy):
        payload = pattern(MIB, 5)
        baseline = sys.getrefcount(payload)
        call = proxy.invoke("echo", payload)
        # Held, not copied: one reference, kept for a retry until the reply.
        assert sys.getrefcount(payload) == baseline + 1
        assert await asyncio.wait_for(call, 60) == payload
        del call
        await until_released(proxy, lambda: sys.getrefcount(payload), baseline)

        # A copied one is never held.
        array = bytearray(payload)
        array_baseline = sys.getrefcount(array)
        call = proxy.invoke("echo", array)
        assert sys.getrefcount(array) == array_baseline
        assert await asyncio.wait_for(call, 60) == payload

        # Nor a small one, below the size where lending pays.
        small = payload[:LEND_MIN - 1]
        before = borrowed(client)
        assert await proxy.invoke("echo", small) == small
        assert borrowed(client) == before
        exact = payload[:LEND_MIN]
        assert await proxy.invoke("echo", exact) == exact
        assert borrowed(client) == before + 1


@both_ways
async def test_lent_oneway_requests_are_written_whole_then_released(loop_reads: bool) -> None:
    async with echo_pair(loop_reads) as (servant, client, proxy):
        oneway = proxy.oneway()
        payloads = [pattern(MIB, 40 + i) for i in range(8)]
        baselines = [refs_of(payloads, i)() for i in range(len(payloads))]
        before = borrowed(client)
        await asyncio.wait_for(asyncio.gather(*(oneway.invoke("keep", p) for p in payloads)), 60)
        assert borrowed(client) - before == len(payloads)
        # A twoway call on the same connection arrives after them.
        await proxy.invoke("echo", b"x")
        assert servant.received == payloads
        servant.received.clear()
        for i in range(len(payloads)):
            await until_released(proxy, refs_of(payloads, i), baselines[i])


async def test_a_lent_payload_over_message_size_max_is_refused_and_released() -> None:
    async with aiocomm.Communicator(message_size_max=MIB) as client:
        proxy = client.proxy("echo:tcp -h 127.0.0.1 -p 1")
        payload = b"\x01" * MIB  # plus the request's head: over the maximum
        baseline = sys.getrefcount(payload)
        with pytest.raises(aiocomm.MessageSizeError):
            proxy.invoke("echo", payload)
        assert sys.getrefcount(payload) == baseline
        assert borrowed(client) == 0
        # Just under it goes (and fails to connect, which is not the point).
        fits = b"\x01" * (MIB - 100)
        call = proxy.invoke("echo", fits)
        assert borrowed(client) == 1
        with pytest.raises(aiocomm.ConnectionRefusedError):
            await asyncio.wait_for(call, 30)


# --- retries: a request sent again after its connection ended still has its payload


class DroppingServer:
    """A raw Ice server whose first connection ends without answering:
    closed before validation (`before_validation`: nothing was sent), or
    with a close-connection once the whole request was read
    (`close_connection`: it was not dispatched, so it may go again). The
    second connection answers the request with an empty reply. `seen` holds
    every request read, whole."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.seen: list[bytes] = []
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(30)
            first, _ = self.listener.accept()
            with first:
                first.settimeout(30)
                if self.how == "close_connection":
                    first.sendall(VALIDATE)
                    self.seen.append(recv_message(first))
                    first.sendall(CLOSE)
                    with contextlib.suppress(OSError):
                        first.recv(1)  # the client closes its end
            second, _ = self.listener.accept()
            with second:
                second.settimeout(30)
                second.sendall(VALIDATE)
                message = recv_message(second)
                self.seen.append(message)
                body = message[14:18] + b"\x00" + struct.pack("<i", 6) + b"\x01\x01"
                second.sendall(b"IceP\x01\x00\x01\x00\x02\x00"
                               + struct.pack("<i", 14 + len(body)) + body)
                with contextlib.suppress(OSError):
                    second.recv(1)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.listener.close()


@contextlib.contextmanager
def dropping(how: str) -> Iterator[DroppingServer]:
    server = DroppingServer(how)
    try:
        yield server
    finally:
        server.thread.join(30)
        assert not server.thread.is_alive()


@both_ways
@pytest.mark.parametrize("how", ["before_validation", "close_connection"])
@pytest.mark.parametrize("kind", ["bytes", "bytearray"])
async def test_a_retried_request_still_has_its_payload(loop_reads: bool, how: str,
                                                       kind: str) -> None:
    original = pattern(MIB, 9)
    payload: Any = original if kind == "bytes" else bytearray(original)
    baseline = sys.getrefcount(payload)
    with dropping(how) as server:
        async with aiocomm.Communicator(loop_reads=loop_reads, message_size_max=SIZE_MAX,
                                        invocation_timeout=60.0) as client:
            proxy = client.proxy(f"x:tcp -h 127.0.0.1 -p {server.port}")
            call = proxy.invoke("op", payload)
            if kind == "bytearray":
                payload[:] = b"\xee" * len(payload)
            assert await asyncio.wait_for(call, 30) == b""
            assert borrowed(client) == (1 if kind == "bytes" else 0)
            del call
        assert sys.getrefcount(payload) == baseline
    assert server.error is None
    assert len(server.seen) == (1 if how == "before_validation" else 2)
    for message in server.seen:
        # Ends with an encapsulation of the payload; the same request each time.
        assert message[-len(original) - 6:] == struct.pack("<i", len(original) + 6) + b"\x01\x01" \
            + original
        assert message == server.seen[0]


# --- the server: params of 1 KiB or more that the loop reads are copied once,
# into the `bytes` the servant receives (stats: owned_bodies)


@both_ways
async def test_request_params_are_read_into_the_bytes_the_servant_receives(
        loop_reads: bool) -> None:
    async with communicators(loop_reads) as (server, client):
        servant, _, proxy = serve_echo(server, client)
        await proxy.invoke("echo", b"warm-up")
        before = server.stats()["owned_bodies"]
        sizes = [KIB - 1, KIB, 4 * KIB, 64 * KIB, MIB] * 4
        payloads = [pattern(size, seed) for seed, size in enumerate(sizes)]
        for payload in payloads:
            await proxy.invoke("keep", payload)
        # Concurrent ones too: several requests parsed from one read.
        await asyncio.gather(*(proxy.invoke("keep", p) for p in payloads))
        assert servant.received == payloads + payloads
        assert all(type(got) is bytes for got in servant.received)
        owned = server.stats()["owned_bodies"] - before
        if loop_reads:
            # 32 of the 40 are 1 KiB or more; a loaded machine may hand a
            # few reads to an I/O thread (the pooled path), no more.
            assert 16 <= owned <= 32, owned
        else:
            assert owned == 0


@both_ways
async def test_large_requests_held_by_an_inactive_adapter_keep_their_params(
        loop_reads: bool) -> None:
    # Read into their bytes while the adapter holds them; dispatched intact
    # once it is activated, and let go with the rest when destroy refuses them.
    async with communicators(loop_reads) as (server, client):
        _, adapter, proxy = serve_echo(server, client, activate=False)
        payloads = [pattern(size, seed) for seed, size in enumerate([2 * KIB, 64 * KIB] * 8)]
        calls = [asyncio.ensure_future(proxy.invoke("echo", p)) for p in payloads]
        await asyncio.sleep(0.2)  # they arrive and are held
        assert not any(call.done() for call in calls)
        adapter.activate()
        assert await asyncio.gather(*calls) == payloads
        _, _, second = serve_echo(server, client, activate=False)
        held = [asyncio.ensure_future(second.invoke("echo", p)) for p in payloads]
        await asyncio.sleep(0.2)
        await server.destroy()  # with them held
        # Each call failed with a typed error; none hung.
        results = await asyncio.gather(*held, return_exceptions=True)
        assert all(isinstance(r, aiocomm.AiocommError) for r in results), results


# --- TLS: the writer encrypts from the head and the lent bytes alike


async def test_lent_requests_over_tls(pki: Path) -> None:
    server_tls = TLS(certfile=pki / "server.pem", keyfile=pki / "server.key",
                     cafile=pki / "ca.pem", verify_peer=0)
    async with aiocomm.Communicator(tls=server_tls, message_size_max=SIZE_MAX) as server, \
            aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"), message_size_max=SIZE_MAX,
                                 invocation_timeout=60.0) as client:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        proxy = client.proxy(str(adapter.add(Echo(), "echo")))
        adapter.activate()
        payloads = [pattern(MIB, 60 + i) for i in range(8)]
        replies = await asyncio.wait_for(
            asyncio.gather(*(proxy.invoke("echo", p) for p in payloads)), 60)
        assert replies == payloads
        assert borrowed(client) == len(payloads)


# --- ends in the middle of a write: no leak, no crash, no hang

MID_WRITE = """
import asyncio, gc, socket, sys, threading
import aiocomm

LOOP, READS, ENDING = sys.argv[1], sys.argv[2] == "loop_reads", sys.argv[3]
SIZE = 4 << 20
VALIDATE = b"IceP\\x01\\x00\\x01\\x00\\x03\\x00\\x0e\\x00\\x00\\x00"

listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
front_read = threading.Event()

def serve():
    # Reads the front of the first request, then nothing: the client is
    # left mid-write, the rest of its requests queued behind.
    conn, _ = listener.accept()
    conn.sendall(VALIDATE)
    got = 0
    while got < 2 << 20:
        chunk = conn.recv(min(65536, (2 << 20) - got))
        if not chunk:
            return
        got += len(chunk)
    front_read.set()
    threading.Event().wait(60)

threading.Thread(target=serve, daemon=True).start()

async def main():
    client = aiocomm.Communicator(loop_reads=READS, message_size_max=8 << 20)
    proxy = client.proxy(f"x:tcp -h 127.0.0.1 -p {port}")
    payloads = [bytes([i]) * SIZE for i in range(16)]
    baselines = [sys.getrefcount(p) for p in payloads]
    calls = [proxy.invoke("op", p) for p in payloads]
    assert client.stats()["borrowed_request_bodies"] == 16
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, front_read.wait, 30)
    if ENDING == "destroy":
        await asyncio.wait_for(client.destroy(), 20)
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, aiocomm.CommunicatorDestroyedError) for r in results), results
        del client, proxy, calls, results
        gc.collect()
        assert [sys.getrefcount(p) for p in payloads] == baselines
    elif ENDING == "drop":
        # Collected without destroy: torn down hard, the GIL released.
        del client, proxy
        gc.collect()
        for call in calls:
            call.cancel()
    # "exit": the interpreter ends with the communicator alive and its
    # writes pending; the exit hook tears it down.
    print("OK", flush=True)
""" + RUN_MAIN_ON_LOOP


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("reads", ["loop_reads", "io_threads"])
@pytest.mark.parametrize("ending", ["destroy", "drop", "exit"])
def test_ending_mid_write_frees_lent_payloads(run_script: Callable[..., Any], loop: str,
                                              reads: str, ending: str) -> None:
    result = run_script(MID_WRITE, timeout=60.0, args=(loop, reads, ending))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK", result.stderr
    assert "Traceback" not in result.stderr, result.stderr

