"""Interpreter exit is a lifecycle event: a communicator created, used or
destroyed at any point of shutdown neither hangs nor crashes the exit.

aiocomm's ``atexit`` hook tears down every live communicator, but code runs
after it: an ``atexit`` handler registered before ``import aiocomm``,
finalizers (``__del__``) during finalization, daemon threads. Each scenario
runs in a fresh interpreter with a hard timeout, must exit with status 0
without a fatal error, an abort or a traceback, and prints a marker showing
that it really ran.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]

LOOPS = ["asyncio", "uvloop"]

VALIDATE = bytes.fromhex("49 63 65 50 01 00 01 00 03 00 0e 00 00 00")
CLOSE = b"IceP\x01\x00\x01\x00\x04\x00\x0e\x00\x00\x00"

# aiocomm is imported by each scenario where it says so: what is registered
# with atexit before the import runs after aiocomm's own hook.
PRELUDE = """
import asyncio, atexit, ctypes, gc, os, socket, sys, threading, time, warnings

warnings.simplefilter("ignore", ResourceWarning)  # some are never destroyed, on purpose
LOOP = sys.argv[1]
VALIDATE = bytes.fromhex("49 63 65 50 01 00 01 00 03 00 0e 00 00 00")

if LOOP == "uvloop":
    import uvloop  # now: importing it inside an atexit handler fails

def run(main):
    if LOOP == "uvloop":
        return uvloop.run(main())
    return asyncio.run(main())

def say(text, _write=os.write):
    # os.write: print may be gone by the time finalizers run.
    _write(1, (text + "\\n").encode())

class Echo:
    def echo(self, payload, current):
        return payload

async def serve_and_call(aiocomm):
    \"\"\"A server and a client communicator that have talked; 200 calls in flight.\"\"\"
    server = aiocomm.Communicator()
    adapter = server.create_object_adapter()
    prx = adapter.add(Echo(), "echo")
    adapter.activate()
    client = aiocomm.Communicator()
    remote = client.proxy(str(prx))
    assert await remote.invoke("echo", b"hi") == b"hi"
    calls = [asyncio.ensure_future(remote.invoke("echo", b"x" * 100)) for _ in range(200)]
    await asyncio.sleep(0)
    return server, client, calls

def silent_peer():
    \"\"\"A raw Ice peer that validates connections, then neither answers nor closes:
    a graceful close waits for it until close_timeout.\"\"\"
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    def accept():
        while True:
            peer, _ = listener.accept()
            peer.sendall(VALIDATE)
            held.append(peer)
    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]

async def connect_to(comm, port):
    \"\"\"A call to the peer at `port`, once the connection is validated.\"\"\"
    before = comm.stats()["messages_in"]
    call = asyncio.ensure_future(comm.proxy(f"x:tcp -h 127.0.0.1 -p {port}").invoke("op"))
    deadline = time.monotonic() + 20
    while comm.stats()["messages_in"] == before and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert comm.stats()["messages_in"] > before, "the peer never validated"
    return call
"""


def check_clean_exit(result: subprocess.CompletedProcess[str], *markers: str) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    for bad in ("Fatal", "Abort", "Traceback", "terminate called", "Exception ignored"):
        assert bad not in result.stderr, result.stderr
    for marker in markers:
        assert marker in result.stdout, f"missing {marker!r}:\n{result.stdout}\n{result.stderr}"


# (a), and (e) with uvloop: a whole life, after aiocomm's atexit hook.
USED_IN_LATE_ATEXIT = PRELUDE + """
def late():
    import aiocomm
    async def main():
        server, client, calls = await serve_and_call(aiocomm)
        await client.destroy()  # with calls in flight
        for result in await asyncio.gather(*calls, return_exceptions=True):
            assert result == b"x" * 100 or isinstance(
                result, aiocomm.CommunicatorDestroyedError), result
        await server.destroy()
        assert client.is_destroyed and server.is_destroyed
        # Not one GIL take by a native thread, destroys included.
        say(f"late life done, native GIL takes: {aiocomm._core.native_gil_acquisitions()}")
    run(main)

atexit.register(late)  # before aiocomm's hook is registered: runs after it
import aiocomm
say("main done")
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_communicator_lives_and_dies_in_an_atexit_handler_after_aiocomms(
        run_script: Run, loop: str) -> None:
    result = run_script(USED_IN_LATE_ATEXIT, args=(loop,), timeout=60)
    check_clean_exit(result, "main done", "late life done, native GIL takes: 0")


@pytest.fixture
def raw_peer() -> Iterator[tuple[int, list[bytes]]]:
    """A raw Ice peer in this process: validates one connection, then records
    what arrives until the other side closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        listener.settimeout(60)
        try:
            peer, _ = listener.accept()
        except OSError:
            return
        with peer:
            peer.settimeout(60)
            peer.sendall(VALIDATE)
            data = b""
            try:
                while chunk := peer.recv(65536):
                    data += chunk
            except OSError:
                pass
            received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        listener.close()
        thread.join(60)


def messages(data: bytes) -> list[bytes]:
    out = []
    while len(data) >= 14:
        size = int.from_bytes(data[10:14], "little")
        out.append(data[:size])
        data = data[size:]
    return out


# (b): created in a late atexit handler and never destroyed. "local" is
# collected when the handler returns, "global" at finalization; "leaked"
# never is (as one held by a daemon thread's frame): only the Py_AtExit
# hook tears it down, after finalization.
CREATED_IN_LATE_ATEXIT = PRELUDE + """
PORT = int(sys.argv[2])
KEEP = []

def late():
    import aiocomm
    async def main():
        server, client, calls = await serve_and_call(aiocomm)
        await asyncio.gather(*calls)
        call = await connect_to(client, PORT)
        return server, client, call
    server, client, call = run(main)
    if sys.argv[3] == "global":
        KEEP.extend([server, client, call])
    elif sys.argv[3] == "leaked":
        for obj in (server, client):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    say("created at exit, never destroyed")

atexit.register(late)
import aiocomm
"""


@pytest.mark.parametrize("how", ["local", "global", "leaked"])
def test_communicator_created_in_a_late_atexit_handler_and_never_destroyed(
        run_script: Run, raw_peer: tuple[int, list[bytes]], how: str) -> None:
    port, received = raw_peer
    result = run_script(CREATED_IN_LATE_ATEXIT, args=("asyncio", str(port), how), timeout=60)
    check_clean_exit(result, "created at exit, never destroyed")
    # The client was torn down before the process ended: its connection
    # closed gracefully, with a CloseConnection after the request, rather
    # than being cut when the process died.
    for _ in range(600):
        if received:
            break
        threading.Event().wait(0.05)
    assert received, "the peer saw no end of the connection"
    kinds = [m[8] for m in messages(received[0])]
    assert kinds[0] == 0, kinds  # the request
    assert messages(received[0])[-1] == CLOSE, kinds


# (c): destroyed from finalizers: in a running loop (awaited), after it
# (blocking), and at interpreter finalization (an object in a module global
# with a reference cycle, holding a communicator created after aiocomm's
# atexit hook so that it is still alive then).
DESTROYED_BY_FINALIZERS = PRELUDE + """
import aiocomm
AWAITING = []

class AwaitsDestroy:
    def __init__(self, comm):
        self.comm = comm
    def __del__(self):
        AWAITING.append((self.comm, asyncio.ensure_future(self.comm.destroy())))

class DestroysBlocking:
    def __init__(self, comm, name):
        self.comm, self.name = comm, name
        self.cycle = self
    def __del__(self):
        self.comm.destroy()  # no running loop: blocks without the GIL
        say(f"{self.name}: destroyed {self.comm.is_destroyed}")

async def main():
    server, client, calls = await serve_and_call(aiocomm)
    holder = AwaitsDestroy(client)
    del holder  # finalized here, in the loop: destroy is awaited
    (comm, waiter), = AWAITING
    await waiter
    await asyncio.gather(*calls, return_exceptions=True)
    say(f"in loop: destroyed {comm.is_destroyed}")
    return server

server = run(main)
DestroysBlocking(server, "after loop")
gc.collect()

def late():
    async def make():
        server, client, calls = await serve_and_call(aiocomm)
        await asyncio.gather(*calls)
        return server, client
    global AT_FINALIZATION
    server, client = run(make)
    AT_FINALIZATION = [DestroysBlocking(client, "at finalization, client"),
                       DestroysBlocking(server, "at finalization, server")]
    say("late handler done")

atexit.register(late)
say("main done")
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_communicators_destroyed_by_finalizers(run_script: Run, loop: str) -> None:
    result = run_script(DESTROYED_BY_FINALIZERS, args=(loop,), timeout=60)
    check_clean_exit(result, "in loop: destroyed True", "after loop: destroyed True",
                     "main done", "late handler done",
                     "at finalization, client: destroyed True",
                     "at finalization, server: destroyed True")


# (d): a daemon thread runs its own loop with communicators, calls in flight,
# round after round, when the main thread exits.
DAEMON_LOOP = PRELUDE + """
import aiocomm
rounds = [0]
going = threading.Event()

def daemon():
    async def main():
        while True:
            try:
                server, client, calls = await serve_and_call(aiocomm)
                await asyncio.sleep(0.01)
                if rounds[0] % 2:
                    await client.destroy()
                    await server.destroy()
                await asyncio.gather(*calls, return_exceptions=True)
            except aiocomm.AiocommError:
                pass  # torn down under our feet by the atexit hook
            rounds[0] += 1
            if rounds[0] == 3:
                going.set()
    run(main)

threading.Thread(target=daemon, daemon=True).start()
assert going.wait(30)
say(f"main exiting after {rounds[0]} rounds")
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_daemon_thread_with_a_loop_and_calls_in_flight_at_exit(run_script: Run, loop: str) -> None:
    result = run_script(DAEMON_LOOP, args=(loop,), timeout=60)
    check_clean_exit(result, "main exiting after")


# (d): a daemon thread blocked in a blocking destroy when the main thread
# exits. Its communicator was created after aiocomm's atexit hook, and a
# silent peer holds its graceful close up. "at exit": nothing ends that
# wait before the Py_AtExit teardown, after finalization. "during
# finalization": close_timeout ends it while a slow finalizer runs. Either
# way the thread re-takes the GIL once the interpreter is finalizing, where
# CPython 3.11-3.13 end it with pthread_exit.
DAEMON_BLOCKED_IN_DESTROY = PRELUDE + """
CLOSE_TIMEOUT = {"at exit": 60.0, "during finalization": 1.0}[sys.argv[2]]
go = threading.Event()
blocking = threading.Event()
# Threads start now: CPython 3.12+ refuses to start one at shutdown.
PEER = silent_peer()

def daemon():
    assert go.wait(60)
    async def make():
        comm = aiocomm.Communicator(close_timeout=CLOSE_TIMEOUT)
        call = await connect_to(comm, PEER)
        return comm, call
    comm, call = run(make)
    blocking.set()
    comm.destroy()  # no running loop: blocks without the GIL
    say("daemon: destroy returned")

threading.Thread(target=daemon, daemon=True).start()

def late():
    go.set()  # the daemon makes its communicator after aiocomm's hook ran
    assert blocking.wait(30)
    time.sleep(0.1)
    say("daemon blocked in destroy")

class SlowFinalizer:
    def __init__(self):
        self.cycle = self
    def __del__(self, _sleep=time.sleep, _say=say):
        _sleep(3.0)  # finalization lasts; the GIL is free meanwhile
        _say("slow finalizer done")

if sys.argv[2] == "during finalization":
    # Held by a module of its own: the daemon's frames keep __main__'s
    # globals alive through finalization, so an object there is never
    # finalized, and this one must be.
    import types
    holder = sys.modules["slow_holder"] = types.ModuleType("slow_holder")
    holder.slow = SlowFinalizer()
    del holder
atexit.register(late)
import aiocomm
"""


@pytest.mark.parametrize("when", ["at exit", "during finalization"])
def test_daemon_thread_blocked_in_destroy_at_exit(run_script: Run, when: str) -> None:
    result = run_script(DAEMON_BLOCKED_IN_DESTROY, args=("asyncio", when), timeout=60)
    markers = ["daemon blocked in destroy"]
    if when == "during finalization":
        markers.append("slow finalizer done")
    check_clean_exit(result, *markers)
