#!/usr/bin/python3
"""A ZeroC Ice IceSSL peer (3.7 or 3.8) for aiocomm's TLS interop tests.

Run with the system interpreter that has Debian's ``python3-zeroc-ice``::

    /usr/bin/python3 tests/interop/icessl_peer.py server PKI VERIFY_PEER
    build/venv-ice38/bin/python tests/interop/icessl_peer.py ...  (Ice 3.8)
    /usr/bin/python3 tests/interop/icessl_peer.py client PKI PROXY [CERT]

PKI is the directory tests/make_test_certs.sh made. The server listens on
``ssl -h 127.0.0.1 -p 0`` with server.pem, prints ``READY <proxy>`` and echoes
(operation ``echo``) until stdin closes. The client trusts ca.pem, presents
client.pem when CERT is ``cert``, calls ``echo`` on PROXY and prints one JSON
line: ``{"ok": true}`` or ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import json
import struct
import sys
import threading

import Ice


class EchoServant(Ice.Blobject):
    def ice_invoke(self, params: bytes, current: Ice.Current) -> tuple[bool, bytes]:
        if current.operation != "echo":
            raise Ice.OperationNotExistException()
        return True, params


def initialize(pki: str, verify_peer: str, cert: str | None) -> Ice.Communicator:
    data = properties(pki, verify_peer, cert)
    if Ice.intVersion() < 30800:
        return Ice.initialize(data)
    return Ice.initialize(initData=data)


def properties(pki: str, verify_peer: str, cert: str | None) -> Ice.InitializationData:
    props = Ice.createProperties()
    if Ice.intVersion() < 30800:  # Ice 3.8 has IceSSL built in
        props.setProperty("Ice.Plugin.IceSSL", "IceSSL:createIceSSL")
    props.setProperty("IceSSL.DefaultDir", pki)
    props.setProperty("IceSSL.CAs", "ca.pem")
    props.setProperty("IceSSL.VerifyPeer", verify_peer)
    props.setProperty("IceSSL.CheckCertName", "1")
    props.setProperty("Ice.Warn.Connections", "0")
    if cert is not None:
        props.setProperty("IceSSL.CertFile", f"{cert}.pem")
        props.setProperty("IceSSL.KeyFile", f"{cert}.key")
    data = Ice.InitializationData()
    data.properties = props
    return data


def serve(pki: str, verify_peer: str) -> int:
    with initialize(pki, verify_peer, "server") as communicator:
        adapter = communicator.createObjectAdapterWithEndpoints("Test", "ssl -h 127.0.0.1 -p 0")
        proxy = adapter.add(EchoServant(), Ice.stringToIdentity("test"))
        adapter.activate()
        sys.stdout.write(f"READY {communicator.proxyToString(proxy)}\n")
        sys.stdout.flush()
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait()
    return 0


def call(pki: str, proxy_text: str, cert: str | None) -> int:
    try:
        with initialize(pki, "2", cert) as communicator:
            proxy = communicator.stringToProxy(proxy_text).ice_invocationTimeout(20000)
            for data in (b"", b"hello", bytes(range(256)) * 400):
                # ice_invoke takes and gives whole encapsulations (1.1).
                payload = struct.pack("<i", 6 + len(data)) + b"\x01\x01" + data
                ok, out = proxy.ice_invoke("echo", Ice.OperationMode.Normal, payload)
                if not ok or out != payload:
                    raise RuntimeError(f"echo of {len(data)} bytes came back wrong")
        print(json.dumps({"ok": True}))
        return 0
    except Exception as e:  # reported to the test, which decides
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "server":
        return serve(argv[1], argv[2])
    if len(argv) >= 3 and argv[0] == "client":
        return call(argv[1], argv[2], "client" if argv[3:] == ["cert"] else None)
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
