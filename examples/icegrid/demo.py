"""IceGrid demo: a registry, three replicas of the hello service, and a client
that stays served while a replica is killed.

    python examples/icegrid/demo.py [--uvloop] [--quick]

Needs Ice 3.7's ``icegridregistry`` (Debian: ``apt-get install zeroc-icegrid``).
It starts the registry on loopback in a temporary directory (dynamic
registration on), then three ``replica.py`` processes that register into the
replica group ``HelloGroup``, and as the client:

1. resolves ``hello@HelloGroup`` and times the first call (the locator's share
   of it: the same first call to the replica's endpoints directly, subtracted)
   and cached calls (indirect against direct);
2. calls ``greet`` (idempotent) in a loop, kills (SIGKILL) the replica serving
   it and reports the failover time: from the kill to the first call served
   by another replica. Every call ends exactly once, in a result or a typed
   error, and the count of each is printed;
3. measures throughput through one, two and three replicas (per-request
   balancing, ``with_connection_cached(False)``), with each replica's CPU
   time per request it served, for projecting beyond this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiocomm
import aiocomm.slice

HERE = Path(__file__).resolve().parent
Demo: Any = aiocomm.slice.load(HERE.parent / "Hello.ice").Demo
GROUP = "HelloGroup"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Registry:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        (directory / "db").mkdir()
        config = directory / "registry.cfg"
        config.write_text("\n".join([
            "IceGrid.InstanceName=IceGrid",
            f"IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p {self.port}",
            "IceGrid.Registry.Server.Endpoints=tcp -h 127.0.0.1",
            "IceGrid.Registry.Internal.Endpoints=tcp -h 127.0.0.1",
            f"IceGrid.Registry.LMDB.Path={directory / 'db'}",
            "IceGrid.Registry.LMDB.MapSize=16",
            "IceGrid.Registry.DynamicRegistration=1",
            "IceGrid.Registry.PermissionsVerifier=IceGrid/NullPermissionsVerifier",
            "IceGrid.Registry.AdminPermissionsVerifier=IceGrid/NullPermissionsVerifier", ""]))
        self.proc = subprocess.Popen(["icegridregistry", f"--Ice.Config={config}"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("icegridregistry did not start") from None
                time.sleep(0.05)
        self.locator = f"IceGrid/Locator:tcp -h 127.0.0.1 -p {self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Replica:
    def __init__(self, locator: str, index: int, uvloop: bool) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "replica.py"), locator, str(index), "--group", GROUP,
             *(["--uvloop"] if uvloop else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"replica {index} did not start: {line!r}")
        self.endpoints = line.split(" at ", 1)[1].strip()

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Ends it as an operator would (stdin closed): it unregisters and exits."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def replica_of(greeting: Any) -> int:
    return int(greeting.text.rsplit(" ", 1)[1])


async def first_call(proxy_text: str, locator: str) -> float:
    async with aiocomm.Communicator(locator=locator) as comm:
        hello = Demo.HelloPrx(comm.proxy(proxy_text))
        started = time.perf_counter()
        await hello.greet("first", None)
        return time.perf_counter() - started


async def latency(hello: Any, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await hello.greet("x", None)
    return (time.perf_counter() - started) / calls


async def failover(comm: aiocomm.Communicator, replicas: list[Replica], quick: bool) -> None:
    hello = Demo.HelloPrx(comm.proxy(f"hello@{GROUP}").with_timeout(10.0))
    serving = replica_of(await hello.greet("who", None))
    results, errors = 0, 0
    killed_at: float | None = None
    moved_at: float | None = None
    deadline = time.monotonic() + (2.0 if quick else 5.0)
    while time.monotonic() < deadline or moved_at is None:
        if killed_at is None and time.monotonic() > deadline - (1.5 if quick else 4.0):
            replicas[serving].kill()
            killed_at = time.perf_counter()
            print(f"client: killed replica {serving} (SIGKILL)", flush=True)
        try:
            answer = replica_of(await hello.greet("loop", None))
            results += 1
            if killed_at is not None and moved_at is None and answer != serving:
                moved_at = time.perf_counter()
                print(f"client: served by replica {answer} after the kill", flush=True)
        except aiocomm.AiocommError as error:  # a typed error: counted, the loop goes on
            errors += 1
            print(f"client: call failed: {type(error).__name__}: {error}", flush=True)
        if time.monotonic() > deadline + 30:
            raise RuntimeError("no replica took over within 30 s")
    assert killed_at is not None and moved_at is not None
    print(f"failover: {(moved_at - killed_at) * 1e3:.1f} ms from the kill to the first call "
          f"served by another replica; {results} calls answered, {errors} typed errors, "
          "none lost", flush=True)


async def _worker(hello: Any, served: dict[int, int], stop: float) -> None:
    while time.monotonic() < stop:
        served[replica_of(await hello.greet("load", None))] += 1


async def throughput(comm: aiocomm.Communicator, replicas: list[Replica], seconds: float,
                     workers: int) -> None:
    for count in range(1, len(replicas) + 1):
        group = replicas[:count]
        endpoints = ":".join(r.endpoints for r in group)
        proxy = comm.proxy(f"hello:{endpoints}").with_connection_cached(False)
        hello = Demo.HelloPrx(proxy)
        for _ in range(20 * count):  # connections up before the clock starts
            await hello.greet("warm", None)
        served = {r.index: 0 for r in group}
        cpu_before = {r.index: r.cpu() for r in group}
        stop = time.monotonic() + seconds

        started, client_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(_worker(hello, served, stop) for _ in range(workers)))
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        total = sum(served.values())
        per_request = ", ".join(
            f"replica {r.index}: {served[r.index]} calls, "
            f"{(r.cpu() - cpu_before[r.index]) / max(served[r.index], 1) * 1e6:.1f} us CPU/call"
            for r in group)
        print(f"throughput through {count} replica(s): {total / elapsed:,.0f} calls/s "
              f"({per_request}; the client {client_cpu / max(total, 1) * 1e6:.1f} us CPU/call)",
              flush=True)


async def main(uvloop: bool, quick: bool) -> None:
    if shutil.which("icegridregistry") is None:
        raise SystemExit("icegridregistry not found: apt-get install zeroc-icegrid")
    with tempfile.TemporaryDirectory(prefix="aiocomm-icegrid-demo-") as directory:
        registry = Registry(Path(directory))
        replicas: list[Replica] = []
        try:
            print(f"demo: registry at {registry.locator}", flush=True)
            replicas = [Replica(registry.locator, i, uvloop) for i in range(3)]
            print("demo: 3 replicas registered in", GROUP, flush=True)
            async with aiocomm.Communicator(locator=registry.locator,
                                            invocation_timeout=10.0) as comm:
                hello = Demo.HelloPrx(comm.proxy(f"hello@{GROUP}"))
                print("client:", await hello.sayHello("aiocomm"), flush=True)
                first = replica_of(await hello.greet("who", None))
                direct = f"hello:{replicas[first].endpoints}"
                # Each a fresh communicator (a new connection; for the indirect
                # one also a lookup); medians of a few, as single runs are noisy.
                # Interleaved after a warm-up round: the first communicators of a
                # process pay for code paths that later ones do not.
                rounds = 5 if quick else 15
                firsts: dict[str, list[float]] = {"indirect": [], "direct": []}
                for i in range(rounds + 1):
                    for kind, text in (("indirect", f"hello@{GROUP}"), ("direct", direct)):
                        elapsed = await first_call(text, registry.locator)
                        if i:
                            firsts[kind].append(elapsed)
                indirect_first = sorted(firsts["indirect"])[rounds // 2]
                direct_first = sorted(firsts["direct"])[rounds // 2]
                calls = 200 if quick else 2000
                cached = await latency(hello, calls)
                plain = await latency(Demo.HelloPrx(comm.proxy(direct)), calls)
                print(f"latency: first call {indirect_first * 1e3:.2f} ms through the locator, "
                      f"{direct_first * 1e3:.2f} ms direct (the locator's share "
                      f"{(indirect_first - direct_first) * 1e3:.2f} ms); cached calls "
                      f"{cached * 1e6:.1f} us indirect, {plain * 1e6:.1f} us direct",
                      flush=True)
                await failover(comm, replicas, quick)
                replicas[first] = Replica(registry.locator, first, uvloop)  # back again
                await throughput(comm, replicas, 0.5 if quick else 3.0, 8 if quick else 32)
                print("client: done", flush=True)
        finally:
            try:
                for replica in replicas:
                    replica.stop()
            finally:
                registry.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short phases (the test's)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.uvloop, args.quick))
    else:
        asyncio.run(main(args.uvloop, args.quick))
