"""TLS interop with IceSSL (issue 15), Ice 3.7 and Ice 3.8: an aiocomm
client against an Ice server and an Ice client against an aiocomm server,
with server-only and mutual authentication, on both loops. The Ice side is
``icessl_peer.py``, run by the Ice 3.7 system interpreter or the Ice 3.8
peer's (found, or skipped without, as ``peer_pythons.py`` says); the
certificates come from tests/make_test_certs.sh.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from peer_pythons import ICE_PYTHON, ice38_python, require_ice

import aiocomm
from aiocomm import TLS

HERE = Path(__file__).resolve().parent
PEER = HERE / "icessl_peer.py"

# Skipped only where aiocomm was built without OpenSSL; under CI=true they run,
# and fail with the TLSError that says what is missing.
pytestmark = pytest.mark.skipif(
    not aiocomm._core.TLS_AVAILABLE and os.environ.get("CI") != "true",
    reason="aiocomm built without OpenSSL (install libssl-dev and rebuild)")


@pytest.fixture(scope="module", params=["ice3.7", "ice3.8"])
def peer_python(request: pytest.FixtureRequest) -> str:
    """The interpreter of the Ice peer (skips, or fails under CI, without it)."""
    if request.param == "ice3.7":
        require_ice()
        return ICE_PYTHON
    return ice38_python()


@pytest.fixture(scope="module", params=[0, 2], ids=["server-auth", "mutual-auth"])
def icessl_server(request: pytest.FixtureRequest, peer_python: str,
                  pki: Path) -> Iterator[tuple[int, str]]:
    """An IceSSL server (VerifyPeer 0 or 2); yields the level and its proxy."""
    verify_peer = int(request.param)
    proc = subprocess.Popen([peer_python, str(PEER), "server", str(pki), str(verify_peer)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY "), f"IceSSL server did not start: {line!r}"
        yield verify_peer, line[len("READY "):]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_aiocomm_client_to_icessl_server(pki: Path,
                                               icessl_server: tuple[int, str]) -> None:
    verify_peer, text = icessl_server
    assert ":ssl -h 127.0.0.1 -p " in text
    own = {"certfile": pki / "client.pem", "keyfile": pki / "client.key"} if verify_peer else {}
    async with aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem", **own)) as comm:
        proxy = comm.proxy(text)
        for payload in (b"", b"hello", bytes(range(256)) * 400):
            assert await proxy.invoke("echo", payload, timeout=20.0) == payload
    if verify_peer == 2:
        # Without a certificate the server refuses the handshake.
        async with aiocomm.Communicator(tls=TLS(cafile=pki / "ca.pem")) as comm:
            with pytest.raises(aiocomm.TLSError):
                await comm.proxy(text).invoke("echo", b"", timeout=20.0)


class Echo:
    def echo(self, payload: bytes, current: aiocomm.Current) -> bytes:
        return payload


@pytest.mark.parametrize("verify_peer", [0, 2], ids=["server-auth", "mutual-auth"])
async def test_icessl_client_to_aiocomm_server(peer_python: str, pki: Path,
                                               verify_peer: int) -> None:
    tls = TLS(certfile=pki / "server.pem", keyfile=pki / "server.key", cafile=pki / "ca.pem",
              verify_peer=verify_peer)
    async with aiocomm.Communicator(tls=tls) as comm:
        adapter = comm.create_object_adapter("ssl -h 127.0.0.1 -p 0")
        text = str(adapter.add(Echo(), "test"))
        adapter.activate()

        async def ice_client(*cert: str) -> dict[str, object]:
            result = await asyncio.to_thread(
                subprocess.run, [peer_python, str(PEER), "client", str(pki), text, *cert],
                capture_output=True, text=True, timeout=50)
            answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
            return answer

        assert await ice_client("cert") == {"ok": True}
        without = await ice_client()
        if verify_peer == 0:
            assert without == {"ok": True}
        else:
            assert without["ok"] is False
