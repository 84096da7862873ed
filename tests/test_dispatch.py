"""Servant dispatch: plain and async methods, results, errors, built-ins, Current,
oneway and batch requests."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aiocomm

VALIDATE = bytes.fromhex("49636550010001000300 0e000000".replace(" ", ""))


class Server:
    """A server communicator with one active adapter, and a client communicator."""

    def __init__(self, server: aiocomm.Communicator, client: aiocomm.Communicator,
                 adapter: aiocomm.ObjectAdapter) -> None:
        self.server = server
        self.client = client
        self.adapter = adapter
        self.endpoint = adapter.endpoints[0]

    def add(self, servant: object, identity: str, facet: str = "") -> aiocomm.Proxy:
        """Registers on the server; returns the client's proxy for it."""
        self.adapter.add(servant, identity, facet)
        text = f"{identity} -f {facet}" if facet else identity
        return self.client.proxy(f"{text}:{self.endpoint}")


@pytest.fixture
async def srv() -> AsyncIterator[Server]:
    server = aiocomm.Communicator()
    client = aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        adapter.activate()
        yield Server(server, client, adapter)
    finally:
        await client.destroy()
        await server.destroy()


class Recorder:
    """Records the Current of every call."""

    def __init__(self) -> None:
        self.currents: list[aiocomm.Current] = []
        self.payloads: list[bytes] = []
        self.snapshots: list[dict[str, Any]] = []

    def record(self, payload: bytes, current: aiocomm.Current) -> bytes:
        self.currents.append(current)
        self.payloads.append(payload)
        self.snapshots.append({
            "identity": current.identity, "facet": current.facet,
            "operation": current.operation, "mode": current.mode,
            "context": dict(current.context), "request_id": current.request_id,
            "adapter": current.adapter, "local": current.local_address,
            "remote": current.remote_address,
        })
        return b"recorded"


async def _wait_for(predicate, timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


# ------------------------------------------------------------- results


async def test_plain_method(srv: Server) -> None:
    class S:
        def upper(self, payload: bytes, current: aiocomm.Current) -> bytes:
            assert isinstance(payload, bytes)
            return payload.upper()

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("upper", b"hello") == b"HELLO"
    assert await proxy.invoke("upper") == b""
    big = bytes(range(256)) * 1000
    assert await proxy.invoke("upper", big) == big.upper()


async def test_async_method(srv: Server) -> None:
    class S:
        async def later(self, payload: bytes, current: aiocomm.Current) -> bytes:
            await asyncio.sleep(0.01)
            return payload[::-1]

        async def immediate(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"now:" + payload

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("later", b"abc") == b"cba"
    assert await proxy.invoke("immediate", b"x") == b"now:x"
    results = await asyncio.gather(*(proxy.invoke("later", bytes([i])) for i in range(50)))
    assert results == [bytes([i]) for i in range(50)]


async def test_async_dispatches_run_concurrently(srv: Server) -> None:
    class S:
        def __init__(self) -> None:
            self.active = 0
            self.peak = 0

        async def wait(self, payload: bytes, current: aiocomm.Current) -> bytes:
            self.active += 1
            self.peak = max(self.peak, self.active)
            await asyncio.sleep(0.1)
            self.active -= 1
            return b""

    servant = S()
    proxy = srv.add(servant, "s")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(proxy.invoke("wait") for _ in range(10)))
    assert servant.peak == 10
    assert loop.time() - start < 0.9


async def test_none_is_empty_reply(srv: Server) -> None:
    class S:
        def nothing(self, payload: bytes, current: aiocomm.Current) -> None:
            return None

        async def async_nothing(self, payload: bytes, current: aiocomm.Current) -> None:
            return None

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("nothing", b"ignored") == b""
    assert await proxy.invoke("async_nothing") == b""


async def test_bytes_like_results(srv: Server) -> None:
    class S:
        def ba(self, payload: bytes, current: aiocomm.Current) -> bytearray:
            return bytearray(b"from-bytearray")

        def mv(self, payload: bytes, current: aiocomm.Current) -> memoryview:
            return memoryview(b"__from-memoryview__")[2:-2]

        async def async_ba(self, payload: bytes, current: aiocomm.Current) -> bytearray:
            return bytearray(payload * 2)

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("ba") == b"from-bytearray"
    assert await proxy.invoke("mv") == b"from-memoryview"
    assert await proxy.invoke("async_ba", b"ab") == b"abab"
    result = await proxy.invoke("ba")
    assert isinstance(result, bytes)


async def test_payload_as_bytearray_and_memoryview(srv: Server) -> None:
    class S:
        def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return payload

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("echo", bytearray(b"abc")) == b"abc"
    assert await proxy.invoke("echo", memoryview(b"xxdefxx")[2:5]) == b"def"


async def test_strided_memoryview_result_is_sent_as_its_bytes(srv: Server) -> None:
    class S:
        def every_other(self, payload: bytes, current: aiocomm.Current) -> memoryview:
            return memoryview(payload)[::2]

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("every_other", b"abcdef") == b"ace"


@pytest.mark.parametrize("bad", [123, "text", [1, 2], object()])
async def test_wrong_result_type_is_unknown_error_and_logged(
        srv: Server, caplog: pytest.LogCaptureFixture, bad: object) -> None:
    class S:
        def wrong(self, payload: bytes, current: aiocomm.Current) -> Any:
            return bad

        async def async_wrong(self, payload: bytes, current: aiocomm.Current) -> Any:
            return bad

    proxy = srv.add(S(), "s")
    with caplog.at_level(logging.DEBUG, logger="aiocomm"):
        for operation in ("wrong", "async_wrong"):
            caplog.clear()
            with pytest.raises(aiocomm.UnknownError) as info:
                await proxy.invoke(operation)
            assert info.value.status == 7
            assert type(bad).__name__ in info.value.message
            records = [r for r in caplog.records if r.name == "aiocomm"]
            assert records, "no log record on logger 'aiocomm'"
            assert any(operation in r.getMessage() for r in records)
            assert max(r.levelno for r in records) >= logging.ERROR
    # The servant's connection keeps working.
    with pytest.raises(aiocomm.OperationNotExistError):
        await proxy.invoke("missing")


# ---------------------------------------------------------- ice_invoke


async def test_ice_invoke_blobject(srv: Server) -> None:
    class Blob:
        def __init__(self) -> None:
            self.seen: list[tuple[str, bytes]] = []

        def ice_invoke(self, payload: bytes, current: aiocomm.Current) -> bytes:
            self.seen.append((current.operation, payload))
            if current.operation == "fail":
                raise aiocomm.UserError(b"blob-user")
            return current.operation.encode() + b"|" + payload

        def ignored(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"should not be called: ice_invoke takes everything"

    blob = Blob()
    proxy = srv.add(blob, "blob")
    assert await proxy.invoke("anything", b"1") == b"anything|1"
    assert await proxy.invoke("ignored", b"2") == b"ignored|2"
    assert await proxy.invoke("_private", b"3") == b"_private|3"
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("fail")
    assert info.value.payload == b"blob-user"
    assert blob.seen == [("anything", b"1"), ("ignored", b"2"), ("_private", b"3"),
                         ("fail", b"")]
    # The built-ins are still answered by the runtime.
    await proxy.ping()
    assert len(blob.seen) == 4


async def test_async_ice_invoke(srv: Server) -> None:
    class Blob:
        async def ice_invoke(self, payload: bytes, current: aiocomm.Current) -> bytes:
            await asyncio.sleep(0)
            return current.operation.encode()

    proxy = srv.add(Blob(), "blob")
    assert await proxy.invoke("op1") == b"op1"
    assert await asyncio.gather(proxy.invoke("a"), proxy.invoke("b")) == [b"a", b"b"]


# ------------------------------------------------------------- built-ins


async def test_builtins_with_type_ids(srv: Server) -> None:
    class Hello:
        type_ids = ("::Demo::Hello", "::Demo::Base")

    proxy = srv.add(Hello(), "hello")
    await proxy.ping()
    assert await proxy.ice_is_a("::Demo::Hello") is True
    assert await proxy.ice_is_a("::Demo::Base") is True
    assert await proxy.ice_is_a("::Ice::Object") is True
    assert await proxy.ice_is_a("::Demo::Other") is False
    assert await proxy.ice_id() == "::Demo::Hello"
    ids = await proxy.ice_ids()
    assert set(ids) == {"::Demo::Hello", "::Demo::Base", "::Ice::Object"}
    assert len(ids) == 3


async def test_builtins_without_type_ids(srv: Server) -> None:
    class Bare:
        pass

    proxy = srv.add(Bare(), "bare")
    await proxy.ping()
    assert await proxy.ice_id() == "::Ice::Object"
    assert await proxy.ice_ids() == ["::Ice::Object"]
    assert await proxy.ice_is_a("::Ice::Object") is True
    assert await proxy.ice_is_a("::Demo::Hello") is False


async def test_builtins_raw_encoding(srv: Server) -> None:
    class Hello:
        type_ids = ["::Demo::Hello"]

    proxy = srv.add(Hello(), "hello")
    assert await proxy.invoke("ice_ping", idempotent=True) == b""
    # ice_isA: a string param; returns a bool (one byte).
    assert await proxy.invoke("ice_isA", b"\x0d::Demo::Hello", idempotent=True) == b"\x01"
    assert await proxy.invoke("ice_isA", b"\x05::Foo", idempotent=True) == b"\x00"
    assert await proxy.invoke("ice_id", idempotent=True) == b"\x0d::Demo::Hello"
    # ice_ids: a sequence<string>, Ice sorts it.
    assert (await proxy.invoke("ice_ids", idempotent=True)
            == b"\x02\x0d::Demo::Hello\x0d::Ice::Object")


async def test_builtins_of_missing_object(srv: Server) -> None:
    proxy = srv.client.proxy(f"ghost:{srv.endpoint}")
    with pytest.raises(aiocomm.ObjectNotExistError):
        await proxy.ping()
    with pytest.raises(aiocomm.ObjectNotExistError):
        await proxy.ice_id()


# --------------------------------------------------------------- Current


async def test_current_attributes(srv: Server) -> None:
    recorder = Recorder()
    proxy = srv.add(recorder, "cat/rec")
    await proxy.invoke("record", b"p1", context={"k": "v", "x": "y"})
    await proxy.invoke("record", b"p2", idempotent=True)
    first, second = recorder.snapshots
    assert first["identity"] == aiocomm.Identity("rec", "cat")
    assert isinstance(first["identity"], aiocomm.Identity)
    assert first["facet"] == ""
    assert first["operation"] == "record"
    assert first["mode"] == aiocomm.OperationMode.NORMAL
    assert second["mode"] == aiocomm.OperationMode.IDEMPOTENT
    assert isinstance(second["mode"], aiocomm.OperationMode)
    assert first["context"] == {"k": "v", "x": "y"}
    assert isinstance(recorder.currents[0].context, dict)
    assert second["context"] == {}
    assert first["request_id"] > 0 and second["request_id"] > 0
    assert first["request_id"] != second["request_id"]
    assert first["adapter"] is srv.adapter
    port = int(srv.endpoint.split()[-1])
    local, remote = first["local"], first["remote"]
    assert isinstance(local, tuple) and len(local) == 2
    assert local == ("127.0.0.1", port)
    assert isinstance(remote, tuple) and remote[0] == "127.0.0.1"
    assert isinstance(remote[1], int) and remote[1] > 0 and remote[1] != port
    # Same connection for both calls.
    assert second["remote"] == remote
    assert recorder.payloads == [b"p1", b"p2"]


async def test_current_facet(srv: Server) -> None:
    recorder = Recorder()
    proxy = srv.add(recorder, "obj", facet="fac")
    await proxy.invoke("record")
    assert recorder.snapshots[0]["facet"] == "fac"
    assert recorder.snapshots[0]["identity"] == aiocomm.Identity("obj")


async def test_current_in_async_method(srv: Server) -> None:
    seen: dict[str, Any] = {}

    class S:
        async def op(self, payload: bytes, current: aiocomm.Current) -> bytes:
            await asyncio.sleep(0.01)
            seen["operation"] = current.operation
            seen["context"] = dict(current.context)
            seen["remote"] = current.remote_address
            return b""

    proxy = srv.add(S(), "s")
    await proxy.invoke("op", context={"a": "1"})
    assert seen["operation"] == "op"
    assert seen["context"] == {"a": "1"}
    assert seen["remote"][0] == "127.0.0.1"


# ---------------------------------------------------------------- errors


async def test_user_error_round_trip(srv: Server) -> None:
    class S:
        def fail(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise aiocomm.UserError(b"\x01\x02exception-data" + payload)

        async def async_fail(self, payload: bytes, current: aiocomm.Current) -> bytes:
            await asyncio.sleep(0)
            raise aiocomm.UserError(bytearray(b"async-data"))

    proxy = srv.add(S(), "s")
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("fail", b"!")
    assert info.value.payload == b"\x01\x02exception-data!"
    assert isinstance(info.value.payload, bytes)
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("async_fail")
    assert info.value.payload == b"async-data"
    big = bytes(range(256)) * 200
    S.fail = lambda self, payload, current: (_ for _ in ()).throw(aiocomm.UserError(big))
    with pytest.raises(aiocomm.UserError) as info:
        await proxy.invoke("fail")
    assert info.value.payload == big


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        (aiocomm.ObjectNotExistError(), aiocomm.ObjectNotExistError, 2),
        (aiocomm.FacetNotExistError(), aiocomm.FacetNotExistError, 3),
        (aiocomm.OperationNotExistError(), aiocomm.OperationNotExistError, 4),
        (aiocomm.UnknownLocalError("local trouble"), aiocomm.UnknownLocalError, 5),
        (aiocomm.UnknownUserError("user trouble"), aiocomm.UnknownUserError, 6),
        (aiocomm.UnknownError("unknown trouble"), aiocomm.UnknownError, 7),
    ],
)
async def test_servant_raises_dispatch_errors(srv: Server, error: aiocomm.DispatchError,
                                              expected: type, status: int) -> None:
    class S:
        def op(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise error

    proxy = srv.add(S(), "obj")
    with pytest.raises(expected) as info:
        await proxy.invoke("op")
    assert type(info.value) is expected
    assert info.value.status == status
    assert isinstance(info.value, aiocomm.DispatchError)
    if status in (2, 3, 4):
        assert info.value.identity == aiocomm.Identity("obj")
        assert info.value.operation == "op"
    else:
        assert info.value.message == error.message


async def test_servant_raises_other_status(srv: Server) -> None:
    class S:
        def op(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise aiocomm.DispatchError("not allowed here", status=9)

    proxy = srv.add(S(), "obj")
    with pytest.raises(aiocomm.DispatchError) as info:
        await proxy.invoke("op")
    assert info.value.status == 9
    assert info.value.message == "not allowed here"
    assert not isinstance(info.value, aiocomm.UnknownError)


async def test_arbitrary_exception_is_unknown_error(srv: Server,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    class S:
        def boom(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise ValueError("the servant went boom")

        async def async_boom(self, payload: bytes, current: aiocomm.Current) -> bytes:
            await asyncio.sleep(0)
            raise KeyError("async-key")

        def ok(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"ok"

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("ok") == b"ok"
    connections = srv.client.stats()["connections"]
    server_connections = srv.server.stats()["connections"]
    assert connections == 1
    with caplog.at_level(logging.ERROR, logger="aiocomm"):
        with pytest.raises(aiocomm.UnknownError) as info:
            await proxy.invoke("boom")
        assert type(info.value) is aiocomm.UnknownError
        assert info.value.status == 7
        assert "the servant went boom" in info.value.message
        assert "ValueError" in info.value.message
        with pytest.raises(aiocomm.UnknownError) as info:
            await proxy.invoke("async_boom")
        assert "async-key" in info.value.message
    logged = [r for r in caplog.records if r.name == "aiocomm" and r.levelno >= logging.ERROR]
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in logged)
    assert any(r.exc_info and isinstance(r.exc_info[1], KeyError) for r in logged)
    # The connection stays up and usable: same connection, still serving.
    assert await proxy.invoke("ok") == b"ok"
    assert srv.client.stats()["connections"] == connections
    assert srv.server.stats()["connections"] == server_connections
    assert srv.server.stats()["protocol_errors"] == 0


async def test_underscore_operations_not_callable(srv: Server) -> None:
    class S:
        def _secret(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"leaked"

        def public(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"public"

    proxy = srv.add(S(), "s")
    assert await proxy.invoke("public") == b"public"
    for operation in ("_secret", "__init__", "__class__", "__reduce__", "__getattribute__"):
        with pytest.raises(aiocomm.OperationNotExistError) as info:
            await proxy.invoke(operation)
        assert info.value.status == 4
        assert info.value.operation == operation


async def test_missing_and_non_callable_operations(srv: Server) -> None:
    class S:
        attribute = b"not a method"
        type_ids = ["::X"]

    proxy = srv.add(S(), "s")
    for operation in ("missing", "attribute", "type_ids"):
        with pytest.raises(aiocomm.OperationNotExistError):
            await proxy.invoke(operation)


async def test_method_with_wrong_signature_is_unknown_error(srv: Server) -> None:
    class S:
        def no_args(self) -> bytes:
            return b""

    proxy = srv.add(S(), "s")
    with pytest.raises(aiocomm.UnknownError) as info:
        await proxy.invoke("no_args")
    assert "TypeError" in info.value.message
    await proxy.ping()


# ------------------------------------------------------------------ oneway


async def test_oneway_dispatch(srv: Server) -> None:
    recorder = Recorder()
    proxy = srv.add(recorder, "rec").oneway()
    assert proxy.is_oneway
    for i in range(5):
        assert await proxy.invoke("record", bytes([i]), context={"i": str(i)}) == b""
    await _wait_for(lambda: len(recorder.payloads) == 5)
    assert recorder.payloads == [bytes([i]) for i in range(5)]
    assert all(s["request_id"] == 0 for s in recorder.snapshots)
    assert [s["context"] for s in recorder.snapshots] == [{"i": str(i)} for i in range(5)]


async def test_oneway_errors_are_not_reported_to_caller(srv: Server) -> None:
    class S:
        def boom(self, payload: bytes, current: aiocomm.Current) -> bytes:
            raise RuntimeError("oneway boom")

        def ok(self, payload: bytes, current: aiocomm.Current) -> bytes:
            return b"ok"

    twoway = srv.add(S(), "s")
    oneway = twoway.oneway()
    assert await oneway.invoke("boom") == b""
    assert await oneway.invoke("missing") == b""
    assert await srv.client.proxy(f"nobody:{srv.endpoint}").oneway().invoke("x") == b""
    assert await twoway.invoke("ok") == b"ok"
    assert srv.client.stats()["connections"] == 1


# ------------------------------------------------------------------- batch


def _string(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 255
    return bytes([len(raw)]) + raw


def _batch_entry(name: str, operation: str, payload: bytes, context: dict[str, str]) -> bytes:
    body = _string(name) + _string("") + b"\x00" + _string(operation) + b"\x00"
    body += bytes([len(context)])
    for key, value in context.items():
        body += _string(key) + _string(value)
    body += struct.pack("<i", len(payload) + 6) + b"\x01\x01" + payload
    return body


def _message(kind: int, body: bytes) -> bytes:
    return b"IceP\x01\x00\x01\x00" + bytes([kind, 0]) + struct.pack("<i", 14 + len(body)) + body


async def test_batch_request(srv: Server) -> None:
    recorder = Recorder()
    srv.adapter.add(recorder, "rec")
    port = int(srv.endpoint.split()[-1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.readexactly(14), 2) == VALIDATE
        entries = [_batch_entry("rec", "record", b"first", {"n": "1"}),
                   _batch_entry("rec", "record", b"second", {}),
                   _batch_entry("rec", "record", b"third", {"n": "3"})]
        batch = _message(1, struct.pack("<i", len(entries)) + b"".join(entries))
        # A twoway ice_ping after the batch, on the same connection.
        ping = _message(0, struct.pack("<i", 7) + _string("rec") + b"\x00\x00"
                        + _string("ice_ping") + b"\x02\x00" + b"\x06\x00\x00\x00\x01\x01")
        writer.write(batch + ping)
        await writer.drain()
        reply = await asyncio.wait_for(reader.readexactly(25), 2)
        assert reply == _message(2, struct.pack("<i", 7) + b"\x00\x06\x00\x00\x00\x01\x01")
        await _wait_for(lambda: len(recorder.payloads) == 3)
        assert recorder.payloads == [b"first", b"second", b"third"]
        assert [s["request_id"] for s in recorder.snapshots] == [0, 0, 0]
        assert [s["context"] for s in recorder.snapshots] == [{"n": "1"}, {}, {"n": "3"}]
        # Nothing else arrives: batch requests get no reply.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.2)
    finally:
        writer.close()


async def test_empty_batch_request(srv: Server) -> None:
    recorder = Recorder()
    srv.adapter.add(recorder, "rec")
    port = int(srv.endpoint.split()[-1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.readexactly(14), 2) == VALIDATE
        ping = _message(0, struct.pack("<i", 1) + _string("rec") + b"\x00\x00"
                        + _string("ice_ping") + b"\x02\x00" + b"\x06\x00\x00\x00\x01\x01")
        writer.write(_message(1, struct.pack("<i", 0)) + ping)
        await writer.drain()
        reply = await asyncio.wait_for(reader.readexactly(25), 2)
        assert reply[8] == 2
        assert recorder.payloads == []
    finally:
        writer.close()
