"""Lifecycle scenarios that can hang or crash a process, each run in a fresh
interpreter with a hard timeout: a hang fails the test instead of the suite.

Every scenario runs on both loops (the script takes the loop name).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]

LOOPS = ["asyncio", "uvloop"]

PRELUDE = """
import asyncio, gc, sys, threading, time, warnings
import aiocomm

def run(main):
    if sys.argv[1] == "uvloop":
        import uvloop
        return uvloop.run(main())
    return asyncio.run(main())

class Echo:
    def echo(self, payload, current):
        return payload
    async def slow(self, payload, current):
        await asyncio.sleep(30)
        return payload
"""

# The original deadlock, reproduced faithfully: the lifecycle thread has
# finished destroying and needs the GIL to complete the awaitable, at the
# very moment the last reference to the communicator is dropped by a thread
# that holds the GIL. The dealloc must release the GIL before it drops the
# core, whose destructor joins that lifecycle thread.
#
# The library's own destroy completion no longer takes the GIL (the loop
# watches a descriptor), so nothing would wait for it: the test hook
# begin_destroy_taking_gil puts the old GIL-taking completion back on this
# one destroy, to keep proving the dealloc's rule (defence in depth).
SEED_DEADLOCK = PRELUDE + """
from aiocomm._core import _testing

if len(sys.argv) > 2 and sys.argv[2] == "keep-gil":
    _testing.set_release_gil_on_dealloc(False)   # the original bug

# A thread waiting for the GIL asks its holder to let go once the switch
# interval has passed, and the holder does so at its next bytecode
# boundary: Communicator.__del__ is one, just before the native dealloc. On
# a loaded machine the interval could pass first and hide the bug. The
# fixed dealloc releases the GIL itself and does not depend on it.
sys.setswitchinterval(1000.0)

async def main():
    holder = [aiocomm.Communicator()]
    adapter = holder[0].create_object_adapter()
    prx = adapter.add(Echo(), "echo")
    adapter.activate()
    assert await prx.invoke("echo", b"hi") == b"hi"
    del adapter, prx
    # Destroy runs on the lifecycle thread, which takes the GIL at its end.
    assert _testing.begin_destroy_taking_gil(holder[0]._handle, lambda: None)
    # With the GIL held throughout, wait until the lifecycle thread blocks on
    # the GIL, then drop the last reference: dealloc runs right there.
    _testing.drop_when_native_thread_waits_for_gil(holder, 10.0)
    print("survived", flush=True)

run(main)
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_seed_deadlock_does_not_happen(run_script: Run, loop: str) -> None:
    result = run_script(SEED_DEADLOCK, args=(loop,), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "survived" in result.stdout


@pytest.mark.parametrize("loop", LOOPS)
def test_seed_deadlock_test_catches_the_bug(run_script: Run, loop: str) -> None:
    # The same scenario with the GIL kept on the dealloc path must hang: this
    # proves the test above would see the bug if it came back.
    try:
        result = run_script(SEED_DEADLOCK, args=(loop, "keep-gil"), timeout=5)
    except subprocess.TimeoutExpired as hang:
        stderr = hang.stderr
    else:
        pytest.fail(f"the scenario did not hang: exit {result.returncode}\n"
                    f"stdout: {result.stdout}\nstderr: {result.stderr}")
    # It hung in the dealloc, where the bug lives, and not before.
    text = stderr.decode() if isinstance(stderr, bytes) else (stderr or "")
    assert "dropping the last reference" in text


EXIT_WITH_LIVE_COMMUNICATORS = PRELUDE + """
keep = []

async def main():
    server = aiocomm.Communicator()
    adapter = server.create_object_adapter()
    prx = adapter.add(Echo(), "echo")
    adapter.activate()
    client = aiocomm.Communicator()
    remote = client.proxy(str(prx))
    assert await remote.invoke("echo", b"x") == b"x"
    # Work in flight everywhere: slow dispatches, pending calls, busy threads.
    keep.extend([server, client, adapter, prx, remote])
    keep.extend(asyncio.ensure_future(remote.invoke("slow")) for _ in range(20))
    keep.extend(asyncio.ensure_future(remote.invoke("echo", b"y" * 1000)) for _ in range(200))
    await asyncio.sleep(0.2)
    print("exiting", flush=True)

warnings.simplefilter("ignore")
run(main)
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_interpreter_exit_with_live_communicators(run_script: Run, loop: str) -> None:
    result = run_script(EXIT_WITH_LIVE_COMMUNICATORS, args=(loop,), timeout=20)
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout
    assert "Fatal Python error" not in result.stderr
    assert "terminate called" not in result.stderr


EXIT_WITHOUT_LOOP = PRELUDE + """
comms = [aiocomm.Communicator() for _ in range(5)]
print("exiting", flush=True)
"""


def test_interpreter_exit_with_communicators_never_bound(run_script: Run) -> None:
    result = run_script(EXIT_WITHOUT_LOOP, args=("asyncio",), timeout=20)
    assert result.returncode == 0, result.stderr
    assert "exiting" in result.stdout


DESTROY_AFTER_LOOP_CLOSED = PRELUDE + """
async def main():
    comm = aiocomm.Communicator()
    adapter = comm.create_object_adapter()
    prx = adapter.add(Echo(), "echo")
    adapter.activate()
    assert await prx.invoke("echo", b"x") == b"x"
    comm.destroy()     # started, never awaited: completes after the loop closed
    return comm

comm = run(main)
# Nobody awaits it: it finishes on its own. is_destroyed means finished
# (every native thread joined), so wait for it, generously.
deadline = time.monotonic() + 20
while not comm.is_destroyed and time.monotonic() < deadline:
    time.sleep(0.01)
assert comm.is_destroyed
assert "destroyed" in repr(comm) and comm.stats()["destroyed"] == 1
# A blocking destroy with no loop at all, after the loop is gone.
comm2 = None
async def make():
    global comm2
    comm2 = aiocomm.Communicator()
    comm2.create_object_adapter().activate()
run(make)
comm2.destroy()        # no running loop: blocks until done
assert comm2.is_destroyed
comm2.destroy()
print("done", flush=True)
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_destroy_after_the_loop_closed(run_script: Run, loop: str) -> None:
    result = run_script(DESTROY_AFTER_LOOP_CLOSED, args=(loop,), timeout=40)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert result.stderr == ""


COLLECT_ON_OTHER_THREAD = PRELUDE + """
async def main():
    server = aiocomm.Communicator()
    adapter = server.create_object_adapter()
    adapter.add(Echo(), "echo")
    adapter.activate()
    for _ in range(20):
        client = aiocomm.Communicator()
        prx = client.proxy(f"echo:{adapter.endpoints[0]}")
        calls = [asyncio.ensure_future(prx.invoke("echo", b"z" * 512)) for _ in range(200)]
        await asyncio.sleep(0)
        holder = [client]
        del client, prx
        t = threading.Thread(target=holder.clear)
        t.start()
        while t.is_alive():
            await asyncio.sleep(0.001)
        await asyncio.gather(*calls, return_exceptions=True)
    await server.destroy()
    print("done", flush=True)

warnings.simplefilter("ignore", ResourceWarning)
run(main)
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_collection_on_another_thread_while_delivering(run_script: Run, loop: str) -> None:
    result = run_script(COLLECT_ON_OTHER_THREAD, args=(loop,), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout


DESTROY_FROM_DISPATCH = PRELUDE + """
async def main():
    comm = aiocomm.Communicator()
    class Stop:
        async def stop(self, payload, current):
            await comm.destroy()
            return b""
        def stop_sync(self, payload, current):
            comm.destroy()   # a plain method cannot await: destroy proceeds anyway
            return b""
    adapter = comm.create_object_adapter()
    prx = adapter.add(Stop(), "stop")
    adapter.activate()
    op = sys.argv[2]
    call = asyncio.ensure_future(prx.invoke(op))
    await asyncio.gather(call, return_exceptions=True)
    await comm.destroy()
    assert comm.is_destroyed
    print("done", flush=True)

run(main)
"""


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("op", ["stop", "stop_sync"])
def test_destroy_from_inside_a_dispatch(run_script: Run, loop: str, op: str) -> None:
    result = run_script(DESTROY_FROM_DISPATCH, args=(loop, op), timeout=20)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout


GC_WITHOUT_DESTROY_ON_LOOP = PRELUDE + """
async def main():
    for _ in range(50):
        comm = aiocomm.Communicator()
        adapter = comm.create_object_adapter()
        prx = adapter.add(Echo(), "echo")
        adapter.activate()
        calls = [asyncio.ensure_future(prx.invoke("echo", b"q")) for _ in range(50)]
        await asyncio.sleep(0)
        del comm        # collected on the loop thread while work is in flight
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            assert r == b"q" or isinstance(r, aiocomm.CommunicatorDestroyedError), r
    print("done", flush=True)

warnings.simplefilter("ignore", ResourceWarning)
run(main)
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_collection_on_the_loop_thread_with_work_in_flight(run_script: Run, loop: str) -> None:
    result = run_script(GC_WITHOUT_DESTROY_ON_LOOP, args=(loop,), timeout=30)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
