"""create_object_adapter(authorize=...): a hook asked before every dispatch,
whose refusal reaches the caller as PermissionDeniedError (reply status 9,
Ice 3.8's Unauthorized). It fails closed: a hook that raises, or answers
anything but a bool, refuses."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import aiocomm
import aiocomm.slice
from aiocomm import TLS


class Echo:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls.append(current.operation)
        return payload

    async def later(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.calls.append(current.operation)
        return payload

    def note(self, payload: bytes, current: aiocomm.Current) -> None:
        self.calls.append(current.operation)


Pair = tuple[aiocomm.Communicator, Echo, aiocomm.Proxy]


def pair_with(authorize: Callable[[aiocomm.Current], bool]
              ) -> Callable[[], AsyncIterator[Pair]]:
    async def make() -> AsyncIterator[Pair]:
        async with aiocomm.Communicator() as server, \
                aiocomm.Communicator(invocation_timeout=20.0) as client:
            adapter = server.create_object_adapter(authorize=authorize)
            servant = Echo()
            proxy = adapter.add(servant, "echo")
            adapter.activate()
            yield server, servant, client.proxy(str(proxy))
    return make


seen: list[tuple[str, str, bytes | None]] = []


def only_echo(current: aiocomm.Current) -> bool:
    seen.append((current.identity.name, current.operation, None))
    return current.operation in ("echo", "ice_ping")


@pytest.fixture
async def guarded() -> AsyncIterator[Pair]:
    seen.clear()
    async for made in pair_with(only_echo)():
        yield made


async def test_the_hook_allows_and_refuses_per_request(guarded: Pair) -> None:
    _, servant, proxy = guarded
    assert await proxy.invoke("echo", b"ok") == b"ok"
    await proxy.ping()
    with pytest.raises(aiocomm.PermissionDeniedError) as refused:
        await proxy.invoke("later", b"no")
    assert isinstance(refused.value, aiocomm.DispatchError) and refused.value.status == 9
    assert "not authorized" in str(refused.value)
    with pytest.raises(aiocomm.PermissionDeniedError):
        await proxy.ice_is_a("::Ice::Object")  # built-ins are asked about too
    assert servant.calls == ["echo"]  # the refused ones never reached the servant
    assert [(name, op) for name, op, _ in seen] == [
        ("echo", "echo"), ("echo", "ice_ping"), ("echo", "later"), ("echo", "ice_isA")]


async def test_a_refused_oneway_is_dropped_and_the_connection_serves_on(guarded: Pair) -> None:
    _, servant, proxy = guarded
    await proxy.oneway().invoke("note", b"")
    assert await proxy.invoke("echo", b"after") == b"after"
    assert servant.calls == ["echo"]
    assert ("echo", "note", None) in seen


async def test_many_concurrent_refusals_each_get_one_answer(guarded: Pair) -> None:
    import asyncio

    _, servant, proxy = guarded
    results = await asyncio.gather(*(proxy.invoke("later" if i % 2 else "echo", bytes([i]))
                                     for i in range(200)), return_exceptions=True)
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, aiocomm.PermissionDeniedError)
        else:
            assert result == bytes([i])
    assert servant.calls == ["echo"] * 100


async def test_the_hook_may_say_why() -> None:
    def picky(current: aiocomm.Current) -> bool:
        if current.context.get("token") != "secret":
            raise aiocomm.PermissionDeniedError("a token is required")
        return True

    async for _, _, proxy in pair_with(picky)():
        with pytest.raises(aiocomm.PermissionDeniedError, match="a token is required"):
            await proxy.invoke("echo", b"x")
        assert await proxy.invoke("echo", b"x", context={"token": "secret"}) == b"x"


async def test_a_failing_or_confused_hook_refuses_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    answers: list[object] = [RuntimeError("database down"), None, 1, True]

    def flaky(current: aiocomm.Current) -> bool:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    async for _, servant, proxy in pair_with(flaky)():
        with caplog.at_level(logging.ERROR, logger="aiocomm"):
            for _ in range(3):
                with pytest.raises(aiocomm.PermissionDeniedError) as refused:
                    await proxy.invoke("echo", b"x")
                assert "database" not in str(refused.value)  # nothing leaks to the caller
            assert await proxy.invoke("echo", b"x") == b"x"
        assert servant.calls == ["echo"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("authorize hook" in m and "raised" in m for m in messages) == 1
    assert sum("returned NoneType, not a bool" in m for m in messages) == 1
    assert sum("returned int, not a bool" in m for m in messages) == 1


async def test_the_hook_must_be_a_plain_callable(comm: aiocomm.Communicator) -> None:
    async def asynchronous(current: aiocomm.Current) -> bool:
        return True

    with pytest.raises(TypeError, match="authorize"):
        comm.create_object_adapter(authorize=asynchronous)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="authorize"):
        comm.create_object_adapter(authorize="yes")  # type: ignore[arg-type]


async def test_typed_servants_are_guarded_too(tmp_path: Path) -> None:
    source = tmp_path / "guard.ice"
    source.write_text("module G { interface Vault { string open(string who); }; };\n")
    G = aiocomm.slice.load(source).G  # type: ignore[attr-defined]

    class Vault(G.Vault):  # type: ignore[misc, name-defined]
        def open(self, who: str, current: aiocomm.Current) -> str:
            return f"opened for {who}"

    def staff_only(current: aiocomm.Current) -> bool:
        return current.context.get("role") == "staff"

    async with aiocomm.Communicator() as server, aiocomm.Communicator() as client:
        adapter = server.create_object_adapter(authorize=staff_only)
        proxy = adapter.add(Vault(), "vault")
        adapter.activate()
        vault = G.VaultPrx(client.proxy(str(proxy)))
        with pytest.raises(aiocomm.PermissionDeniedError):
            await vault.open("eve")
        assert await vault.with_context({"role": "staff"}).open("bob") == "opened for bob"


@pytest.mark.skipif(not aiocomm._core.TLS_AVAILABLE and os.environ.get("CI") != "true",
                    reason="aiocomm built without OpenSSL (install libssl-dev and rebuild)")
async def test_the_hook_decides_on_the_tls_peer(pki: Path) -> None:
    def clients_of_our_ca(current: aiocomm.Current) -> bool:
        return current.tls is not None and current.tls.subject == "CN=client"

    server = aiocomm.Communicator(tls=TLS(certfile=pki / "server.pem", keyfile=pki / "server.key",
                                          cafile=pki / "ca.pem", verify_peer=1))
    signed = aiocomm.Communicator(tls=TLS(certfile=pki / "client.pem", keyfile=pki / "client.key",
                                          cafile=pki / "ca.pem"))
    anonymous = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0:tcp -h 127.0.0.1 -p 0",
                                               authorize=clients_of_our_ca)
        ssl_text, tcp_text = str(adapter.add(Echo(), "echo")).split(":", 1)[1].split(":")
        adapter.activate()
        assert await signed.proxy(f"echo:{ssl_text}").invoke("echo", b"hi") == b"hi"
        with pytest.raises(aiocomm.PermissionDeniedError):
            await anonymous.proxy(f"echo:{ssl_text}").invoke("echo", b"hi")
        with pytest.raises(aiocomm.PermissionDeniedError):
            await anonymous.proxy(f"echo:{tcp_text}").invoke("echo", b"hi")
    finally:
        for comm in (signed, anonymous, server):
            await comm.destroy()
