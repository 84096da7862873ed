"""Peers for the fault and soak tests: a servant, a server process, raw-socket
helpers, /proc readers, and the soak's client lanes.

Importable from the tests (``import _peers``) and runnable as a script:

    python tests/_peers.py server LOOP PORT
        serves Svc as "svc" on 127.0.0.1:PORT (0: any), prints its endpoint,
        and runs until its stdin closes.
    python tests/_peers.py soak-client LOOP ENDPOINT TAG SECONDS SEED LANES
        runs LANES soak lanes against ENDPOINT and prints their tally as JSON.
    python tests/_peers.py flood-client LOOP ENDPOINT
        keeps calls in flight against ENDPOINT until it is killed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiocomm

HERE = Path(__file__).resolve()

# ------------------------------------------------------------------ scenario scripts

# The end of a scenario script for conftest's run_script: runs its main() on
# the loop its LOOP names ("asyncio" or "uvloop", from its arguments).
RUN_MAIN_ON_LOOP = """
if LOOP == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""

# ------------------------------------------------------------------ wire

VALIDATE = b"IceP\x01\x00\x01\x00\x03\x00\x0e\x00\x00\x00"
CLOSE = b"IceP\x01\x00\x01\x00\x04\x00\x0e\x00\x00\x00"


def ice_string(text: str) -> bytes:
    raw = text.encode()
    return (bytes([len(raw)]) if len(raw) < 255 else b"\xff" + struct.pack("<i", len(raw))) + raw


def request(request_id: int, name: str, operation: str, payload: bytes = b"",
            mode: int = 0) -> bytes:
    """An Ice 1.0 request message (encoding 1.1)."""
    body = (struct.pack("<i", request_id) + ice_string(name) + ice_string("") + b"\x00"
            + ice_string(operation) + bytes([mode]) + b"\x00"
            + struct.pack("<i", len(payload) + 6) + b"\x01\x01" + payload)
    return b"IceP\x01\x00\x01\x00\x00\x00" + struct.pack("<i", 14 + len(body)) + body


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


def recv_message(sock: socket.socket) -> bytes:
    header = recv_exactly(sock, 14)
    (size,) = struct.unpack_from("<i", header, 10)
    return header + recv_exactly(sock, size - 14)


def reset(sock: socket.socket) -> None:
    """Closes with an RST (SO_LINGER 0): the peer sees a connection reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ----------------------------------------------------------------- /proc


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def status_kb(field: str, pid: int | str = "self") -> int:
    """A ``kB`` field of /proc/PID/status, e.g. VmRSS or VmHWM."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def thread_count(pid: int | str = "self") -> int:
    return status_kb("Threads", pid)


# --------------------------------------------------------------- servant


class Svc:
    """fast, slow, failing and counting operations; ``stats`` reports the process."""

    type_ids = ["::Test::Svc"]

    def __init__(self, comm: aiocomm.Communicator | None = None) -> None:
        self.comm = comm
        self.calls: collections.Counter[str] = collections.Counter()
        self.notes: collections.Counter[str] = collections.Counter()
        self.bad_notes = 0
        self.rng = random.Random(1)

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls["echo"] += 1
        return payload

    async def sleep(self, payload: bytes, current: aiocomm.Current) -> bytes:
        """Sleeps for float(payload) seconds, then echoes it."""
        self.calls[f"sleep-{current.mode.name.lower()}"] += 1
        await asyncio.sleep(float(payload or b"0"))
        return payload

    async def slow(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls["slow"] += 1
        await asyncio.sleep(self.rng.random() * 0.02)
        return payload

    def user(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls["user"] += 1
        raise aiocomm.UserError(payload[:16])

    async def boom(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls["boom"] += 1
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    def note(self, payload: bytes, current: aiocomm.Current) -> None:
        """A oneway: counted under the caller's context key "c"."""
        if len(payload) >= 4 and struct.unpack_from("<i", payload)[0] != len(payload):
            self.bad_notes += 1
        self.notes[current.context.get("c", "")] += 1

    def count(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return str(self.notes[current.context.get("c", "")]).encode()

    def stats(self, payload: bytes, current: aiocomm.Current) -> bytes:
        report: dict[str, Any] = dict(self.comm.stats()) if self.comm else {}
        # Not counting this very dispatch.
        for key in ("dispatches_in_flight", "python_dispatches_in_flight"):
            if key in report:
                report[key] -= 1
        report.update(fds=fd_count(), rss_kb=status_kb("VmRSS"), hwm_kb=status_kb("VmHWM"),
                      threads=thread_count(), calls=dict(self.calls))
        return json.dumps(report).encode()


# ------------------------------------------------------- server process


def loop_name() -> str:
    """"uvloop" or "asyncio": the running loop's kind."""
    return "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"


def run_on(loop: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())  # type: ignore[arg-type]
    return asyncio.run(main())  # type: ignore[arg-type]


class ServerProcess:
    """A Svc server in a child process. ``stop()`` ends it cleanly, ``kill()`` with SIGKILL."""

    def __init__(self, proc: subprocess.Popen[str], endpoint: str) -> None:
        self.proc = proc
        self.endpoint = endpoint
        self.port = int(endpoint.split()[-1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, loop: str, port: int = 0, timeout: float = 10.0) -> ServerProcess:
        proc = subprocess.Popen([sys.executable, str(HERE), "server", loop, str(port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline), timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if not line.startswith("tcp "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the server did not start: {line!r}")
        return cls(proc, line.strip())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = -9
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


def _serve(loop: str, port: int) -> None:
    async def main() -> None:
        async with aiocomm.Communicator() as comm:
            adapter = comm.create_object_adapter(f"tcp -h 127.0.0.1 -p {port}")
            adapter.add(Svc(comm), "svc")
            adapter.activate()
            print(adapter.endpoints[0], flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    import logging

    logging.getLogger("aiocomm").setLevel(logging.CRITICAL)  # "boom" logs a traceback each
    run_on(loop, main)


def _flood(loop: str, endpoint: str) -> None:
    """Keeps twoways (slow and large), oneways and pings in flight until killed."""

    async def main() -> None:
        comm = aiocomm.Communicator()
        prx = comm.proxy(f"svc:{endpoint}")
        await prx.ping()
        pending: set[asyncio.Future[bytes]] = set()
        big = b"z" * 60_000
        print("ready", flush=True)
        for i in range(1_000_000):
            while len(pending) >= 64:
                _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            kind = i % 4
            if kind == 0:
                pending.add(prx.invoke("sleep", b"0.5"))
            elif kind == 1:
                pending.add(prx.invoke("echo", big))
            elif kind == 2:
                pending.add(prx.oneway().invoke("note", struct.pack("<i", 4)))
            else:
                pending.add(prx.invoke("slow", b"x"))

    run_on(loop, main)


# ------------------------------------------------------------------ soak

SIZES = (0, 1, 17, 512, 4096, 16_384, 65_536)
OPS = ("echo", "echo", "slow", "user", "boom", "note", "note", "note")


class Tally:
    """Counts every invocation once it resolves, by kind of outcome."""

    def __init__(self) -> None:
        self.issued = 0
        self.resolved = 0
        self.open: set[int] = set()
        self.twice = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []
        self.written: collections.Counter[str] = collections.Counter()  # oneways per tag
        self.oneway_failed: collections.Counter[str] = collections.Counter()  # per tag
        self.barrier_mismatch: list[str] = []
        self.epochs = 0
        self.abrupt_epochs = 0  # destroyed with calls in flight, counted when destroy began
        self.calls_in_flight_at_destroy = 0
        self._ids = 0

    def begin(self) -> int:
        self._ids += 1
        self.issued += 1
        self.open.add(self._ids)
        return self._ids

    def end(self, token: int, kind: str, unexpected: str | None = None) -> None:
        if token in self.open:
            self.open.discard(token)
            self.resolved += 1
        else:
            self.twice += 1
        self.outcomes[kind] += 1
        if unexpected is not None and len(self.unexpected) < 50:
            self.unexpected.append(unexpected)

    def as_dict(self) -> dict[str, Any]:
        return {"issued": self.issued, "resolved": self.resolved, "unresolved": len(self.open),
                "resolved_twice": self.twice, "outcomes": dict(self.outcomes),
                "unexpected": self.unexpected, "written": dict(self.written),
                "oneway_failed": dict(self.oneway_failed),
                "barrier_mismatch": self.barrier_mismatch, "epochs": self.epochs,
                "abrupt_epochs": self.abrupt_epochs,
                "calls_in_flight_at_destroy": self.calls_in_flight_at_destroy}


def _payload(rng: random.Random, op: str) -> bytes:
    size = rng.choice(SIZES)
    if op == "note":
        size = max(size, 4)
    if size < 4:
        return rng.randbytes(size)
    return struct.pack("<i", size) + rng.randbytes(size - 4)


async def _one(prx: aiocomm.Proxy, oneway: aiocomm.Proxy, op: str, payload: bytes, tag: str,
               tally: Tally, destroying: list[bool]) -> None:
    """One invocation: issued, awaited, and its outcome checked and counted exactly once."""
    token = tally.begin()
    try:
        if op == "note":
            future = oneway.invoke("note", payload)
        else:
            future = prx.invoke(op, payload)
        result = await future
    except aiocomm.CommunicatorDestroyedError:
        if op == "note":
            tally.oneway_failed[tag] += 1
        tally.end(token, "CommunicatorDestroyedError",
                  None if destroying[0] else f"{op}: destroyed before destroy began")
        return
    except aiocomm.UserError as e:
        ok = op == "user" and e.payload == payload[:16]
        tally.end(token, "UserError", None if ok else f"{op}: UserError {e.payload[:8]!r}")
        return
    except aiocomm.UnknownError as e:
        ok = op == "boom" and "boom" in str(e)
        tally.end(token, type(e).__name__, None if ok else f"{op}: {e!r}")
        return
    except aiocomm.AiocommError as e:
        tally.end(token, type(e).__name__, f"{op}: {e!r}")
        return
    except Exception as e:  # not typed: a finding
        tally.end(token, f"untyped:{type(e).__name__}", f"{op}: untyped {e!r}")
        return
    if op == "note":
        if result == b"":
            tally.written[tag] += 1
            tally.end(token, "oneway-written")
        else:
            tally.end(token, "corrupt", f"note returned {result[:8]!r}")
    elif op in ("echo", "slow") and bytes(result) == payload:
        tally.end(token, "ok")
    else:
        tally.end(token, "corrupt", f"{op}: {len(payload)} bytes sent, {len(result)} returned")


async def _worker(prx: aiocomm.Proxy, tag: str, rng: random.Random, tally: Tally,
                  stop: asyncio.Event, destroying: list[bool]) -> None:
    oneway = prx.oneway()
    for _ in range(1_000_000):
        if stop.is_set():
            return
        burst = []
        for _ in range(rng.randint(1, 8)):
            op = rng.choice(OPS)
            burst.append(_one(prx, oneway, op, _payload(rng, op), tag, tally, destroying))
        await asyncio.gather(*burst)
        if destroying[0]:
            return


async def soak_lane(endpoint: str, lane: str, seconds: float, seed: int, tally: Tally) -> None:
    """Communicators one after another, each for a fraction of a second with a few
    workers; half end with a barrier then a clean destroy, half are destroyed with
    calls in flight."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for epoch in range(1, 100_000):
        if loop.time() >= deadline:
            return
        tag = f"{lane}.{epoch}"
        abrupt = rng.random() < 0.5
        tally.epochs += 1
        comm = aiocomm.Communicator(invocation_timeout=30.0)
        prx = comm.proxy(f"svc:{endpoint}").with_context({"c": tag})
        stop = asyncio.Event()
        destroying = [False]
        workers = [asyncio.ensure_future(_worker(prx, tag, random.Random(rng.random()), tally,
                                                 stop, destroying))
                   for _ in range(rng.randint(1, 4))]
        await asyncio.sleep(min(rng.uniform(0.1, 0.6), max(0.0, deadline - loop.time())))
        if abrupt:
            # Destroy in the middle. It counts as destroyed with calls in
            # flight only if some really were, at the moment it began.
            in_flight = comm.stats()["pending_invocations"]
            tally.abrupt_epochs += in_flight > 0
            tally.calls_in_flight_at_destroy += in_flight
            destroying[0] = True
            await asyncio.wait_for(comm.destroy(), 15)
            await asyncio.wait_for(asyncio.gather(*workers), 15)
        else:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), 15)
            counted = int(await prx.invoke("count"))  # a twoway barrier on the same connection
            if counted != tally.written[tag]:
                tally.barrier_mismatch.append(f"{tag}: wrote {tally.written[tag]}, "
                                              f"server counted {counted}")
            destroying[0] = True
            await asyncio.wait_for(comm.destroy(), 15)


async def soak_lanes(endpoint: str, name: str, seconds: float, seed: int, lanes: int,
                     tally: Tally) -> None:
    await asyncio.gather(*(soak_lane(endpoint, f"{name}-{i}", seconds, seed * 100 + i, tally)
                           for i in range(lanes)))


def _soak_client(loop: str, endpoint: str, name: str, seconds: float, seed: int,
                 lanes: int) -> None:
    tally = Tally()

    async def main() -> None:
        await soak_lanes(endpoint, name, seconds, seed, lanes, tally)

    run_on(loop, main)
    print(json.dumps(tally.as_dict()), flush=True)


def time_budget(default: float) -> float:
    value = os.environ.get("AIOCOMM_SOAK_SECONDS")
    return float(value) if value else default


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


if __name__ == "__main__":
    command, loop_kind, *rest = sys.argv[1:]
    if command == "server":
        _serve(loop_kind, int(rest[0]))
    elif command == "flood-client":
        _flood(loop_kind, rest[0])
    elif command == "soak-client":
        _soak_client(loop_kind, rest[0], rest[1], float(rest[2]), int(rest[3]), int(rest[4]))
    else:
        raise SystemExit(f"unknown command {command!r}")
