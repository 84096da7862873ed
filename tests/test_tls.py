"""TLS (issue 15, first part): ``ssl`` endpoints with server-only and mutual
authentication, verification failures as TLSError, and hostile peers of an
ssl port that close only their own connection. Certificates come from
tests/make_test_certs.sh, made once per session in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from _peers import CLOSE, RUN_MAIN_ON_LOOP, VALIDATE, recv_message, request

import aiocomm
from aiocomm import TLS

# Skipped only where aiocomm was built without OpenSSL; under CI=true they run,
# and fail with the TLSError that says what is missing.
pytestmark = pytest.mark.skipif(
    not aiocomm._core.TLS_AVAILABLE and os.environ.get("CI") != "true",
    reason="aiocomm built without OpenSSL (install libssl-dev and rebuild)")



def server_tls(pki: Path, verify_peer: int = 0) -> TLS:
    return TLS(certfile=pki / "server.pem", keyfile=pki / "server.key", cafile=pki / "ca.pem",
               verify_peer=verify_peer)


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


@pytest.fixture
async def server(pki: Path) -> AsyncIterator[tuple[aiocomm.Communicator, str]]:
    """A server-only-authentication ssl server; yields it and its echo proxy string."""
    comm = aiocomm.Communicator(tls=server_tls(pki), connect_timeout=1.0)
    try:
        adapter = comm.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        proxy = adapter.add(Echo(), "echo")
        adapter.activate()
        yield comm, str(proxy)
    finally:
        await comm.destroy()


async def test_echo_over_tls(pki: Path,
                             server: tuple[aiocomm.Communicator, str]) -> None:
    _, text = server
    assert ":ssl -h 127.0.0.1 -p " in text
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        proxy = client.proxy(text)
        assert await proxy.invoke("echo", b"hello") == b"hello"
        big = bytes(range(256)) * 2000  # several TLS records
        assert await proxy.invoke("echo", big) == big
        payloads = [i.to_bytes(4, "little") * 100 for i in range(64)]
        replies = await asyncio.gather(*(proxy.invoke("echo", p) for p in payloads))
        assert replies == payloads
    finally:
        await client.destroy()


@pytest.mark.parametrize("loop_reads", [True, False], ids=["loop_reads", "io_threads"])
async def test_the_loop_reads_tls_records_only_after_the_handshake(
        pki: Path, loop_reads: bool) -> None:
    """With loop_reads the loop decrypts what it reads once the handshake (on the I/O
    threads) is done, as it reads tcp; without, it reads nothing at all."""
    server = aiocomm.Communicator(tls=server_tls(pki), loop_reads=loop_reads)
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"), loop_reads=loop_reads)
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        proxy = client.proxy(str(adapter.add(Echo(), "echo")))
        adapter.activate()
        assert await proxy.invoke("echo", b"warm-up") == b"warm-up"
        before = {side: comm.stats() for side, comm in (("client", client), ("server", server))}
        for i in range(50):
            payload = bytes([i]) * (1000 + 100 * i)
            assert await proxy.invoke("echo", payload) == payload
        for side, comm in (("client", client), ("server", server)):
            after = comm.stats()
            loop_read = after["loop_read_calls"] - before[side]["loop_read_calls"]
            if loop_reads:
                # Most reads are the loop's (a few may be handed over on a
                # loaded machine, as over tcp: test_loop_reads.py).
                assert loop_read >= 40, (side, loop_read)
            else:
                assert after["loop_read_calls"] == 0, side
    finally:
        await client.destroy()
        await server.destroy()


async def test_a_handshake_completes_while_the_servers_loop_is_blocked(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    """The handshake never runs on the loop: a client gets through it, and gets the
    server's validate-connection, while the server's loop is stuck."""
    _, text = server
    outcome: list[object] = []

    def connect() -> None:
        try:
            with socket.create_connection(("127.0.0.1", _port(text)), timeout=10) as raw, \
                    _client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                outcome.append(recv_message(tls))
        except Exception as error:  # reported by the assertion below
            outcome.append(error)

    thread = threading.Thread(target=connect)
    thread.start()
    deadline = time.monotonic() + 15
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.01)  # the loop (the server's) is blocked throughout
    thread.join(15)
    assert outcome == [VALIDATE]


async def test_a_forged_record_after_the_handshake_closes_only_that_connection(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    """Past the handshake, records are decrypted where the connection is read (the
    loop, with loop_reads): a record that fails authentication ends that connection
    with a TLSError and nothing else."""
    comm, text = server
    raw = socket.create_connection(("127.0.0.1", _port(text)), timeout=10)
    with _client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert recv_message(tls) == VALIDATE
        # Application data that no key made: the record's tag does not verify.
        with socket.socket(fileno=os.dup(tls.fileno())) as under:
            under.sendall(b"\x17\x03\x03\x00\x40" + bytes(range(64)))
            took = await _serve_while(pki, text, under, 10.0)
    assert took is not None and took < 5.0
    assert comm.stats()["protocol_errors"] == 0  # a TLS failure, not an Ice one


def _renegotiating_client(pki: Path, port: int) -> subprocess.Popen[bytes]:
    """``openssl s_client`` over TLS 1.2, past its handshake (Python's ssl cannot
    renegotiate; s_client does on an ``R`` line of its input)."""
    client = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
         "-CAfile", str(pki / "ca.pem"), "-verify_return_error"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert client.stdout is not None
    seen = b""
    while b"Verify return code: 0" not in seen:
        line = client.stdout.readline()
        assert line, seen.decode(errors="replace")
        seen += line
    return client


async def test_a_renegotiation_attempt_closes_only_that_connection(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    _, text = server
    client = _renegotiating_client(pki, _port(text))
    with client:  # closes its pipes
        try:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write(b"R\n")  # s_client: renegotiate
            client.stdin.flush()
            echo = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
            try:
                proxy = echo.proxy(text)
                ended = asyncio.create_task(asyncio.to_thread(client.wait, 10))
                start = time.monotonic()
                while not ended.done():
                    assert await proxy.invoke("echo", b"served", timeout=10.0) == b"served"
                    await asyncio.sleep(0.05)
                await ended
                took = time.monotonic() - start
            finally:
                await echo.destroy()
            output = client.stdout.read()
            assert b"RENEGOTIATING" in output
            assert took < 5.0
        finally:
            if client.poll() is None:
                client.kill()
            client.wait()


async def test_mutual_authentication(pki: Path) -> None:
    server = aiocomm.Communicator(tls=server_tls(pki, verify_peer=2), connect_timeout=2.0)
    with_cert = aiocomm.Communicator(tls=TLS(certfile=pki / "client.pem",
                                             keyfile=pki / "client-enc.key", password="secret",
                                             cafile=pki / "ca.pem"))
    without = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"), connect_timeout=5.0)
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        text = str(adapter.add(Echo(), "echo"))
        adapter.activate()
        assert await with_cert.proxy(text).invoke("echo", b"signed") == b"signed"
        with pytest.raises(aiocomm.TLSError, match="certificate") as info:
            await without.proxy(text).invoke("echo", b"anonymous", timeout=10.0)
        assert isinstance(info.value, ConnectionError)
        # The refused client did not disturb the authenticated one.
        assert await with_cert.proxy(text).invoke("echo", b"again") == b"again"
    finally:
        for comm in (with_cert, without, server):
            await comm.destroy()


async def test_wrong_ca_is_refused(pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    _, text = server
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "other-ca.pem"))
    try:
        with pytest.raises(aiocomm.TLSError, match="certificate verify failed"):
            await client.proxy(text).invoke("echo", b"x", timeout=10.0)
    finally:
        await client.destroy()


async def test_hostname_is_checked(pki: Path) -> None:
    server = aiocomm.Communicator(tls=server_tls(pki))
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    relaxed = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem", check_hostname=False))
    try:
        adapter = server.create_object_adapter("ssl -h 0.0.0.0 -p 0")
        port = _port(str(adapter.add(Echo(), "echo")))
        adapter.activate()
        assert await client.proxy(f"echo:ssl -h localhost -p {port}").invoke("echo", b"1") == b"1"
        # The certificate names localhost and 127.0.0.1, not 127.0.0.2.
        other = f"echo:ssl -h 127.0.0.2 -p {port}"
        with pytest.raises(aiocomm.TLSError, match="mismatch"):
            await client.proxy(other).invoke("echo", b"", timeout=10.0)
        assert await relaxed.proxy(other).invoke("echo", b"ok", timeout=10.0) == b"ok"
    finally:
        for comm in (client, relaxed, server):
            await comm.destroy()


async def test_tls_client_to_a_tcp_server_fails_with_tls_error(pki: Path) -> None:
    plain = aiocomm.Communicator()
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"), connect_timeout=5.0)
    try:
        adapter = plain.create_object_adapter("tcp -h 127.0.0.1 -p 0")
        adapter.add(Echo(), "echo")
        adapter.activate()
        port = int(adapter.endpoints[0].rsplit("-p ", 1)[1].split()[0])
        with pytest.raises(aiocomm.TLSError):
            await client.proxy(f"echo:ssl -h 127.0.0.1 -p {port}").invoke("echo", b"", timeout=10)
    finally:
        await client.destroy()
        await plain.destroy()


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Reads until the peer closes; the time it took, or None if it did not."""
    sock.settimeout(0.2)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


async def _serve_while(pki: Path, text: str, hostile: socket.socket,
                       seconds: float) -> float | None:
    """Echoes over TLS from another client while waiting for `hostile` to be closed."""
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        proxy = client.proxy(text)
        waiting = asyncio.create_task(asyncio.to_thread(_closed_within, hostile, seconds))
        while not waiting.done():
            assert await proxy.invoke("echo", b"still served", timeout=10.0) == b"still served"
            await asyncio.sleep(0.05)
        return await waiting
    finally:
        await client.destroy()


def _port(text: str) -> int:
    return int(text.rsplit("-p ", 1)[1].split()[0])


async def test_plain_bytes_to_an_ssl_port_close_only_that_connection(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    _, text = server
    with socket.create_connection(("127.0.0.1", _port(text))) as hostile:
        # An Ice validate-connection, as a plain tcp peer would speak first.
        hostile.sendall(b"IceP\x01\x00\x01\x00\x03\x00\x0e\x00\x00\x00" * 4)
        took = await _serve_while(pki, text, hostile, 10.0)
    assert took is not None and took < 5.0


async def test_a_stalled_handshake_is_closed_after_connect_timeout(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    _, text = server  # connect_timeout=1.0
    with socket.create_connection(("127.0.0.1", _port(text))) as hostile:
        # Half a ClientHello record: the header promises more than comes.
        hostile.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        took = await _serve_while(pki, text, hostile, 20.0)
    # connect_timeout (1 s) plus the timer's scan; generous for a loaded machine.
    assert took is not None and 0.5 < took < 10.0


async def test_an_ssl_endpoint_needs_a_certificate() -> None:
    comm = aiocomm.Communicator()
    try:
        with pytest.raises(ValueError, match="certificate"):
            comm.create_object_adapter("ssl -h 127.0.0.1 -p 0")
    finally:
        await comm.destroy()


def test_configuration_errors(pki: Path) -> None:
    with pytest.raises(ValueError, match=r"missing\.pem"):
        aiocomm.Communicator(tls=TLS(certfile=pki / "missing.pem"))
    with pytest.raises(ValueError, match="verify_peer"):
        TLS(verify_peer=3)
    with pytest.raises(ValueError, match="min_version"):
        TLS(min_version="SSLv3")
    with pytest.raises(TypeError):
        aiocomm.Communicator(tls="yes")  # type: ignore[arg-type]


def test_ssl_endpoints_parse_and_format() -> None:
    from aiocomm._proxy_string import parse_proxy

    spec = parse_proxy("a:ssl -h example.com -p 4064 -t 5000:tcp -h example.com -p 4063")
    assert [e.transport for e in spec.endpoints] == ["ssl", "tcp"]
    assert str(spec.endpoints[0]) == "ssl -h example.com -p 4064 -t 5000"


class WhoIsCalling:
    def who(self, payload: bytes, current: aiocomm.Current) -> bytes:
        info = current.tls
        if info is None:
            return b"tcp"
        assert info.der[:1] in (b"", b"\x30")  # a DER SEQUENCE, or none at all
        return "|".join([info.subject, info.issuer, ",".join(info.subject_alt_names),
                         info.protocol, str(bool(info.cipher)), str(len(info.der) > 0)]).encode()


async def test_current_tls_tells_who_is_calling(pki: Path) -> None:
    server = aiocomm.Communicator(tls=server_tls(pki, verify_peer=1))
    signed = aiocomm.Communicator(tls=TLS(certfile=pki / "client.pem", keyfile=pki / "client.key",
                                          cafile=pki / "ca.pem"))
    anonymous = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0:tcp -h 127.0.0.1 -p 0")
        ssl_text, tcp_text = str(adapter.add(WhoIsCalling(), "who")).split(":", 1)[1].split(":")
        adapter.activate()
        got = await signed.proxy(f"who:{ssl_text}").invoke("who")
        assert got == b"CN=client|CN=aiocomm test CA||TLSv1.3|True|True"
        # verify_peer=1 asks but does not require: no certificate, no subject.
        got = await anonymous.proxy(f"who:{ssl_text}").invoke("who")
        assert got == b"|||TLSv1.3|True|False"
        assert await anonymous.proxy(f"who:{tcp_text}").invoke("who") == b"tcp"
    finally:
        for comm in (signed, anonymous, server):
            await comm.destroy()


async def test_reload_tls_applies_to_new_connections(pki: Path) -> None:
    server = aiocomm.Communicator(tls=server_tls(pki))
    first = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    later = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        text = str(adapter.add(Echo(), "echo"))
        adapter.activate()
        assert await first.proxy(text).invoke("echo", b"1") == b"1"
        with pytest.raises(ValueError, match=r"missing\.pem"):
            server.reload_tls(TLS(certfile=pki / "missing.pem"))
        server.reload_tls(TLS(certfile=pki / "other-server.pem", keyfile=pki / "other-server.key",
                              verify_peer=0))
        # The established connection keeps its session...
        assert await first.proxy(text).invoke("echo", b"2") == b"2"
        # ...a new one meets the new certificate, which `later` does not trust.
        with pytest.raises(aiocomm.TLSError, match="certificate verify failed"):
            await later.proxy(text).invoke("echo", b"3", timeout=10.0)
    finally:
        for comm in (first, later, server):
            await comm.destroy()


async def test_a_garbage_client_hello_closes_only_that_connection(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    _, text = server
    with socket.create_connection(("127.0.0.1", _port(text))) as hostile:
        # A handshake record whose ClientHello is noise.
        body = bytes((i * 37 + 11) % 256 for i in range(200))
        hostile.sendall(b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body)
        took = await _serve_while(pki, text, hostile, 10.0)
    assert took is not None and took < 5.0


async def test_an_expired_server_certificate_is_refused(pki: Path) -> None:
    server = aiocomm.Communicator(tls=TLS(certfile=pki / "expired.pem",
                                          keyfile=pki / "expired.key", verify_peer=0))
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        text = str(adapter.add(Echo(), "echo"))
        adapter.activate()
        with pytest.raises(aiocomm.TLSError, match="expired"):
            await client.proxy(text).invoke("echo", b"", timeout=10.0)
    finally:
        await client.destroy()
        await server.destroy()


async def test_a_client_certificate_of_another_ca_is_refused(pki: Path) -> None:
    server = aiocomm.Communicator(tls=server_tls(pki, verify_peer=2))
    stranger = aiocomm.Communicator(tls=TLS(certfile=pki / "other-client.pem",
                                            keyfile=pki / "other-client.key",
                                            cafile=pki / "ca.pem"))
    member = aiocomm.Communicator(tls=TLS(certfile=pki / "client.pem",
                                          keyfile=pki / "client.key", cafile=pki / "ca.pem"))
    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        text = str(adapter.add(Echo(), "echo"))
        adapter.activate()
        with pytest.raises(aiocomm.TLSError, match="unknown ca"):
            await stranger.proxy(text).invoke("echo", b"", timeout=10.0)
        assert await member.proxy(text).invoke("echo", b"member") == b"member"
    finally:
        for comm in (stranger, member, server):
            await comm.destroy()


async def test_many_large_calls_in_flight(pki: Path,
                                          server: tuple[aiocomm.Communicator, str]) -> None:
    # Enough bytes at once that sockets fill and ciphertext waits its turn.
    _, text = server
    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    try:
        proxy = client.proxy(text)
        payloads = [bytes([i]) * (200_000 + i) for i in range(24)]
        replies = await asyncio.gather(*(proxy.invoke("echo", p, timeout=30.0)
                                         for p in payloads))
        assert replies == payloads
    finally:
        await client.destroy()


# --------------------------------------------------------------- close_notify
#
# A graceful close ends the TLS stream with close_notify, as IceSSL does; a
# peer's close_notify ends the connection as a FIN does over TCP. Python's
# ssl module is the other end: with suppress_ragged_eofs=False an end without
# close_notify raises SSLEOFError, and unwrap() succeeds only once both
# alerts crossed.

def _reply(request: bytes, payload: bytes) -> bytes:
    """The Ice reply (status ok) to `request`, carrying `payload`."""
    body = request[14:18] + b"\x00" + struct.pack("<i", 6 + len(payload)) + b"\x01\x01" + payload
    return b"IceP\x01\x00\x01\x00\x02\x00" + struct.pack("<i", 14 + len(body)) + body


def _client_context(pki: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


def _server_context(pki: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki / "server.pem"), str(pki / "server.key"))
    return context


async def test_a_graceful_close_sends_close_notify(pki: Path) -> None:
    # An aiocomm server closing gracefully (destroy): close-connection, the
    # client's close_notify, then ours, and no wait for close_timeout.
    server = aiocomm.Communicator(tls=server_tls(pki), close_timeout=60.0)
    connected = threading.Event()

    def python_client(port: int) -> list[str]:
        seen = []
        with _client_context(pki).wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=20),
                server_hostname="127.0.0.1", suppress_ragged_eofs=False) as tls:
            assert recv_message(tls) == VALIDATE
            tls.sendall(request(1, "echo", "echo", b"hi"))
            seen.append(recv_message(tls)[-2:].decode())
            connected.set()
            if recv_message(tls) == CLOSE:
                seen.append("close-connection")
            tls.unwrap()  # ours, then theirs: raises unless theirs comes
            seen.append("close_notify")
        return seen

    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        port = _port(str(adapter.add(Echo(), "echo")))
        adapter.activate()
        client = asyncio.create_task(asyncio.to_thread(python_client, port))
        assert await asyncio.to_thread(connected.wait, 20)
        started = time.monotonic()
        await server.destroy()
        took = time.monotonic() - started
        assert await asyncio.wait_for(client, 20) == ["hi", "close-connection", "close_notify"]
        # The client's close_notify ended the wait as a FIN does, not the
        # 60 s close_timeout.
        assert took < 20
    finally:
        await server.destroy()


async def test_a_peer_that_does_not_answer_still_gets_close_notify(pki: Path) -> None:
    # Nothing waits for the peer's close_notify: after close_timeout the
    # connection ends, with our alert, and the peer reads a clean end.
    server = aiocomm.Communicator(tls=server_tls(pki), close_timeout=0.5)
    connected = threading.Event()

    def python_client(port: int) -> bytes:
        with _client_context(pki).wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=20),
                server_hostname="127.0.0.1", suppress_ragged_eofs=False) as tls:
            assert recv_message(tls) == VALIDATE
            connected.set()
            assert recv_message(tls) == CLOSE
            return tls.recv(100)  # SSLEOFError without a close_notify

    try:
        adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        port = _port(str(adapter.add(Echo(), "echo")))
        adapter.activate()
        client = asyncio.create_task(asyncio.to_thread(python_client, port))
        assert await asyncio.to_thread(connected.wait, 20)
        await server.destroy()
        assert await asyncio.wait_for(client, 20) == b""
    finally:
        await server.destroy()


async def test_a_peers_close_notify_ends_the_connection_as_a_fin_does(pki: Path) -> None:
    # A Python ssl server: it ends the first connection with close_notify
    # while a call is pending, then serves the call that reconnects.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]

    def python_server() -> list[str]:
        seen = []
        context = _server_context(pki)
        for answer in (False, True):
            raw, _ = listener.accept()
            raw.settimeout(20)
            with context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as tls:
                tls.sendall(VALIDATE)
                call = recv_message(tls)
                if answer:
                    tls.sendall(_reply(call, b"served"))
                    # The client's graceful close (destroy): close-connection,
                    # then the alerts.
                    assert recv_message(tls) == CLOSE
                tls.unwrap()  # ours, then the client's answer
                seen.append("close_notify answered")
        return seen

    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"), close_timeout=60.0)
    server_thread = asyncio.create_task(asyncio.to_thread(python_server))
    try:
        proxy = client.proxy(f"echo:ssl -h 127.0.0.1 -p {port}")
        # The call was sent, then the connection ended: as over TCP, a call
        # that is not idempotent fails rather than run twice.
        with pytest.raises(aiocomm.ConnectionLostError):
            await proxy.invoke("echo", b"first", timeout=20.0)
        assert await proxy.invoke("echo", b"second", timeout=20.0) == b"served"
        started = time.monotonic()
        await client.destroy()
        assert time.monotonic() - started < 20  # the server's alert, not close_timeout
        assert await asyncio.wait_for(server_thread, 20) == ["close_notify answered"] * 2
    finally:
        await client.destroy()
        listener.close()


class _MemoryTLSServer:
    """One server-side TLS connection over memory BIOs, so the test decides
    what leaves in one send (blocking; a test thread's)."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.plain = b""
        while not self._try(self.tls.do_handshake):
            pass
        self.flush()

    def _try(self, step: Callable[[], object]) -> bool:
        """Runs `step`; on want-read sends what is due and receives more."""
        try:
            step()
            return True
        except ssl.SSLWantReadError:
            self.flush()
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("EOF") from None
            self.incoming.write(data)
            return False

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def recv_message(self) -> bytes:
        def more() -> None:
            self.plain += self.tls.read(65536)

        while len(self.plain) < 14 or len(self.plain) < struct.unpack_from("<i", self.plain, 10)[0]:
            self._try(more)
        size = struct.unpack_from("<i", self.plain, 10)[0]
        message, self.plain = self.plain[:size], self.plain[size:]
        return message


async def test_a_close_notify_that_comes_with_the_last_bytes_is_seen(pki: Path) -> None:
    # The reply and the close_notify in one segment: the reader stops at the
    # reply, and nothing more arrives to wake it for the alert (the peer
    # waits for our answer); it must come back for it anyway.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]

    def python_server() -> str:
        raw, _ = listener.accept()
        with raw:
            raw.settimeout(20)
            peer = _MemoryTLSServer(raw, _server_context(pki))
            peer.tls.write(VALIDATE)
            peer.flush()
            peer.tls.write(_reply(peer.recv_message(), b"last"))
            with contextlib.suppress(ssl.SSLWantReadError):
                peer.tls.unwrap()
            peer.flush()  # one send: the reply's record, then close_notify
            while not peer._try(peer.tls.unwrap):
                pass
            return "close_notify answered"

    client = aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem"))
    server_thread = asyncio.create_task(asyncio.to_thread(python_server))
    try:
        proxy = client.proxy(f"echo:ssl -h 127.0.0.1 -p {port}")
        assert await proxy.invoke("echo", b"x", timeout=20.0) == b"last"
        assert await asyncio.wait_for(server_thread, 20) == "close_notify answered"
    finally:
        await client.destroy()
        listener.close()


async def test_an_abortive_close_sends_no_close_notify(
        pki: Path, server: tuple[aiocomm.Communicator, str]) -> None:
    # A protocol error ends the connection at once: no close-connection and
    # no close_notify, so a strict peer sees a truncated stream.
    _, text = server

    def python_client() -> str:
        with _client_context(pki).wrap_socket(
                socket.create_connection(("127.0.0.1", _port(text)), timeout=20),
                server_hostname="127.0.0.1", suppress_ragged_eofs=False) as tls:
            assert recv_message(tls) == VALIDATE
            tls.sendall(b"NotIce" + bytes(8))  # a header without Ice's magic
            try:
                data = tls.recv(100)
            except ssl.SSLEOFError:
                return "truncated"
            except ConnectionResetError:
                return "reset"
            return f"read {data!r}"

    assert await asyncio.wait_for(asyncio.to_thread(python_client), 20) in ("truncated", "reset")


# Destroy and interpreter exit with TLS connections busy both ways (the loop
# reading and decrypting, the I/O threads writing what it could not), in a
# fresh interpreter with a hard timeout: a hang fails the test, not the suite.
BUSY_TLS = """
import asyncio, sys, warnings
from pathlib import Path
import aiocomm

LOOP, PKI, HOW = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
keep = []

class Echo:
    def echo(self, payload, current):
        return payload

async def main():
    server = aiocomm.Communicator(tls=aiocomm.TLS(
        certfile=PKI / "server.pem", keyfile=PKI / "server.key", verify_peer=0))
    client = aiocomm.Communicator(tls=aiocomm.TLS(cafile=PKI / "ca.pem"),
                                  message_size_max=4 << 20)
    adapter = server.create_object_adapter("ssl -h 127.0.0.1 -p 0")
    proxy = client.proxy(str(adapter.add(Echo(), "echo")))
    adapter.activate()
    assert await proxy.invoke("echo", b"x") == b"x"
    calls = [asyncio.ensure_future(proxy.invoke("echo", bytes([i]) * (512 << 10)))
             for i in range(32)]
    calls += [asyncio.ensure_future(proxy.invoke("echo", b"small")) for _ in range(500)]
    await asyncio.sleep(0.05)
    if HOW == "destroy":
        await asyncio.wait_for(asyncio.gather(client.destroy(), server.destroy()), 20)
        results = await asyncio.gather(*calls, return_exceptions=True)
        # Every call ended: replied before the destroy, or failed with a typed error.
        assert all(r == b"small" or isinstance(r, (bytes, aiocomm.CommunicatorDestroyedError,
                                                   ConnectionError)) for r in results), results
        print("destroyed", flush=True)
    else:
        keep.extend([server, client, adapter, proxy, *calls])
        print("exiting", flush=True)

warnings.simplefilter("ignore")""" + RUN_MAIN_ON_LOOP


@pytest.mark.parametrize("how", ["destroy", "exit"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_destroy_and_exit_with_tls_connections_busy(
        pki: Path, run_script: Callable[..., subprocess.CompletedProcess[str]],
        loop: str, how: str) -> None:
    result = run_script(BUSY_TLS, args=(loop, str(pki), how), timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("destroyed" if how == "destroy" else "exiting") in result.stdout
    assert "Fatal Python error" not in result.stderr
