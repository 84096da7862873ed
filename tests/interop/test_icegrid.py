"""aiocomm with a real IceGrid registry (Ice 3.7's ``icegridregistry``).

aiocomm servers register their adapters (dynamic registration), aiocomm and
Ice clients resolve them, aiocomm clients resolve Ice servers, well-known
objects added through ``icegridadmin`` resolve, replicas form groups by
registering, a group declared in an application refuses a dynamic adapter,
and a registry that is killed and restarted is found again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from icegrid_registry import Registry, require_icegrid
from peer_pythons import peer_python  # each Ice version's interpreter, or skip/fail

import aiocomm
import aiocomm.slice

HERE = Path(__file__).resolve().parent
PEER = HERE / "icegrid_peer.py"
TIMEOUT = 20.0  # invocation timeout of the tests' communicators: generous


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return bytes((len(data),)) + data


def _read_string(data: bytes) -> str:
    return bytes(data[1:1 + data[0]]).decode("utf-8")


class Who:
    """Answers ``whoami`` with its name (a Slice string)."""

    type_ids = ("::Test::Who", "::Ice::Object")

    def __init__(self, name: str) -> None:
        self.name = name

    def whoami(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return _string(self.name)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    """One registry for the module's tests (each uses adapter ids of its own)."""
    require_icegrid()
    reg = Registry()
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()


def grid(registry: Registry, **options: Any) -> aiocomm.Communicator:
    """A communicator that resolves through ``registry``."""
    options.setdefault("invocation_timeout", TIMEOUT)
    return aiocomm.Communicator(locator=registry.locator, **options)


async def whoami(proxy: aiocomm.Proxy) -> str:
    return _read_string(await proxy.invoke("whoami", b""))


async def test_register_and_resolve_by_adapter_id(registry: Registry) -> None:
    adapter_id = unique("Hello")
    async with grid(registry) as server, grid(registry) as client:
        adapter = server.create_object_adapter(adapter_id=adapter_id)
        made = adapter.add(Who("aiocomm"), "hello")
        assert str(made) == f"hello -t -e 1.1 @ {adapter_id}"
        assert made.adapter_id == adapter_id and made.endpoints == ()
        assert await adapter.activate() is None  # registered now
        proxy = client.proxy(f"hello@{adapter_id}")
        assert str(proxy) == str(made)
        assert client.proxy(str(proxy)) == proxy
        assert await whoami(proxy) == "aiocomm"
        assert await whoami(made) == "aiocomm"  # the server's own indirect proxy
        await adapter.deactivate()  # clears the registration
        with pytest.raises(aiocomm.NotRegisteredError):
            await client.proxy(f"hello@{adapter_id}").with_locator(registry.locator).ping()


async def test_unknown_adapter_and_object(registry: Registry) -> None:
    async with grid(registry) as comm:
        with pytest.raises(aiocomm.NotRegisteredError) as info:
            await comm.proxy(f"hello@{unique('Nowhere')}").ping()
        assert "Nowhere" in str(info.value)
        with pytest.raises(aiocomm.NotRegisteredError):
            await comm.proxy(unique("nobody")).ping()


async def test_well_known_object_added_by_admin(registry: Registry) -> None:
    adapter_id, name = unique("Known"), unique("known")
    async with grid(registry) as server, grid(registry) as client:
        adapter = server.create_object_adapter(adapter_id=adapter_id)
        adapter.add(Who("well-known"), name)
        await adapter.activate()
        await asyncio.to_thread(registry.admin, f'object add "{name}@{adapter_id}" "::Test::Who"')
        try:
            proxy = client.proxy(name)
            assert proxy.adapter_id == "" and str(proxy) == f"{name} -t -e 1.1"
            assert await whoami(proxy) == "well-known"
        finally:
            await asyncio.to_thread(registry.admin, f'object remove "{name}"', check=False)
        await adapter.deactivate()


PEERS = pytest.mark.parametrize("version", ["ice37", "ice38"])


async def _run_peer(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [python, str(PEER), *args], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=50, check=False)


@PEERS
async def test_ice_client_resolves_aiocomm_server(registry: Registry, version: str) -> None:
    python = peer_python(version)
    adapter_id = unique("ForIce")
    async with grid(registry) as server:
        adapter = server.create_object_adapter(adapter_id=adapter_id)
        adapter.add(Who("aiocomm-for-ice"), "hello")
        await adapter.activate()
        result = await _run_peer(python, "client", registry.locator, f"hello@{adapter_id}")
        assert result.stdout.strip() == "OK aiocomm-for-ice", result.stdout + result.stderr
        await adapter.deactivate()


@PEERS
async def test_aiocomm_client_resolves_ice_server(registry: Registry, version: str) -> None:
    python = peer_python(version)
    adapter_id = unique("IceServer")
    peer = subprocess.Popen([python, str(PEER), "server", registry.locator, adapter_id],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(peer.stdout.readline), 30)
        assert line.startswith("READY hello"), line
        assert line.rstrip().endswith(f"@ {adapter_id}"), line  # 3.7 adds "-t -e 1.1"
        async with grid(registry) as client:
            proxy = client.proxy(line.split(" ", 1)[1].strip())
            assert await whoami(proxy) == f"ice:{adapter_id}"
    finally:
        peer.kill()
        peer.communicate(timeout=30)


async def test_replicas_form_a_group_and_fail_over(registry: Registry) -> None:
    group = unique("Group")
    comms = [grid(registry)
             for _ in range(3)]
    try:
        adapters = []
        for i, comm in enumerate(comms):
            adapter = comm.create_object_adapter(adapter_id=f"{group}-{i}",
                                                 replica_group_id=group)
            made = adapter.add(Who(f"replica-{i}"), "hello")
            assert str(made) == f"hello -t -e 1.1 @ {group}"
            await adapter.activate()
            adapters.append(adapter)
        async with grid(registry) as client:
            proxy = client.proxy(f"hello@{group}")
            first = await whoami(proxy)
            assert first in {"replica-0", "replica-1", "replica-2"}
            # Per-request balancing: every replica answers in turn.
            balanced = proxy.with_connection_cached(False)
            assert {await whoami(balanced) for _ in range(6)} == {
                "replica-0", "replica-1", "replica-2"}
            # The replica that served dies: new calls go to a living one.
            dead = int(first.rsplit("-", 1)[1])
            await comms[dead].destroy()
            for _ in range(5):
                answer = await whoami(proxy)
                assert answer != first and answer.startswith("replica-")
    finally:
        for comm in comms:
            await comm.destroy()


async def test_declared_group_refuses_a_dynamic_adapter(registry: Registry) -> None:
    group, app = unique("Declared"), unique("App")
    with tempfile.TemporaryDirectory() as directory:
        descriptor = Path(directory) / "app.xml"
        descriptor.write_text(f'<icegrid><application name="{app}">'
                              f'<replica-group id="{group}"/></application></icegrid>')
        await asyncio.to_thread(registry.admin, f"application add {descriptor}")
    try:
        async with grid(registry) as comm:
            adapter = comm.create_object_adapter(adapter_id=unique("Intruder"),
                                                 replica_group_id=group)
            adapter.add(Who("intruder"), "hello")
            registration = adapter.activate()
            assert adapter.is_active  # dispatching at once, whatever the registry says
            with pytest.raises(aiocomm.RegistrationError) as info:
                await registration
            assert isinstance(info.value, aiocomm.AdapterNotFoundError)
            assert group in str(info.value)
            # Direct proxies still reach it.
            assert await whoami(adapter.create_direct_proxy("hello")) == "intruder"
    finally:
        await asyncio.to_thread(registry.admin, f"application remove {app}", check=False)


async def test_registry_killed_and_restarted_is_found_again() -> None:
    require_icegrid()
    registry = Registry()
    try:
        registry.start()
        adapter_id = unique("Survivor")
        async with aiocomm.Communicator(locator=registry.locator, invocation_timeout=TIMEOUT,
                                        locator_cache_timeout=0) as server, \
                aiocomm.Communicator(locator=registry.locator, invocation_timeout=TIMEOUT,
                                     locator_cache_timeout=0) as client:
            adapter = server.create_object_adapter(adapter_id=adapter_id)
            adapter.add(Who("survivor"), "hello")
            await adapter.activate()
            proxy = client.proxy(f"hello@{adapter_id}")
            assert await whoami(proxy) == "survivor"
            registry.kill()
            with pytest.raises(aiocomm.LocatorUnreachableError) as info:
                await proxy.ping()
            assert isinstance(info.value, ConnectionError)
            await asyncio.to_thread(registry.start)
            # The registry keeps dynamic registrations in its database.
            assert await whoami(proxy) == "survivor"
            # The server's registry proxy is stale (the restarted registry's
            # server endpoint has another port): registering finds it again.
            late = server.create_object_adapter(adapter_id=unique("Late"))
            late.add(Who("late"), "hello")
            await late.activate()
            assert await whoami(client.proxy(f"hello@{late.adapter_id}")) == "late"
            await adapter.deactivate()  # unregistering reaches it too
            with pytest.raises(aiocomm.NotRegisteredError):
                await proxy.ping()
    finally:
        registry.stop()


@pytest.mark.parametrize("flags", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_example_keeps_the_client_served(flags: list[str]) -> None:
    """examples/icegrid/demo.py: three replicas, one killed, the client served."""
    require_icegrid()
    demo = HERE.parent.parent / "examples" / "icegrid" / "demo.py"
    done = subprocess.run([sys.executable, str(demo), "--quick", *flags],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=50, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "demo: 3 replicas registered in HelloGroup" in output
    assert "client: Hello, aiocomm, from replica" in output
    assert "after the kill" in output and "none lost" in output
    assert "throughput through 3 replica(s)" in output
    assert "client: done" in output


class ReplicaProcess:
    """examples/icegrid/replica.py: registers as Hello-INDEX in a group."""

    def __init__(self, registry: Registry, index: int, group: str) -> None:
        script = HERE.parent.parent / "examples" / "icegrid" / "replica.py"
        self.proc = subprocess.Popen([sys.executable, str(script), registry.locator, str(index),
                                      "--group", group], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        assert line.startswith("READY "), line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


async def test_failover_soak_every_call_ends_once(registry: Registry) -> None:
    """Replicas are killed (SIGKILL) and restarted under load: every call ends
    exactly once, in a result or a typed error, and none is lost."""
    hello_ice = HERE.parent.parent / "examples" / "Hello.ice"
    demo: Any = aiocomm.slice.load(hello_ice).Demo
    group = unique("Soak")
    replicas = [ReplicaProcess(registry, i, group) for i in range(3)]
    try:
        for replica in replicas:
            await replica.ready()
        async with grid(registry, invocation_timeout=10.0) as comm:
            hello = demo.HelloPrx(comm.proxy(f"hello@{group}"))
            balanced = demo.HelloPrx(comm.proxy(f"hello@{group}").with_connection_cached(False))
            issued = results = 0
            errors: list[BaseException] = []
            running = True

            async def caller(n: int) -> None:
                nonlocal issued, results
                while running:
                    issued += 1
                    target = balanced if n % 2 else hello
                    try:
                        if n % 3:
                            await target.greet("soak", None)  # idempotent
                        else:
                            await target.sayHello("soak")
                        results += 1
                    except aiocomm.AiocommError as error:
                        errors.append(error)

            callers = [asyncio.ensure_future(caller(n)) for n in range(8)]
            for victim in (0, 1, 2):
                await asyncio.sleep(0.5)
                replicas[victim].kill()
                replicas[victim] = ReplicaProcess(registry, victim, group)
                await replicas[victim].ready()
            await asyncio.sleep(0.5)
            running = False
            await asyncio.wait_for(asyncio.gather(*callers), 30)  # none lost
            assert issued == results + len(errors)
            assert results > 100
            # Only a call in flight on a killed replica may fail, and only a
            # non-idempotent one (idempotent calls go again elsewhere).
            for error in errors:
                assert isinstance(error, aiocomm.ConnectionLostError), repr(error)
            assert len(errors) <= 3 * 8
            assert (await hello.greet("after", None)).text.startswith("replica")
    finally:
        for replica in replicas:
            replica.kill()
