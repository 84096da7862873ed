#!/usr/bin/python3
"""ZeroC Ice peers of the IceGrid tests: Ice 3.7 (the system interpreter) or 3.8.

``icegrid_peer.py server LOCATOR ADAPTER_ID [REPLICA_GROUP_ID]``: an Ice server
whose adapter registers itself with the locator (``Ice.Default.Locator`` and
``<adapter>.AdapterId``), serving identity ``hello``; prints ``READY <proxy>``
once registered and serves until stdin closes.

``icegrid_peer.py client LOCATOR PROXY``: resolves ``PROXY`` (indirect or
well-known) through the locator, calls ``whoami`` on it and prints ``OK
<answer>`` (``ERROR <exception>`` and exit status 1 on failure).

The servant is a Blobject (no Slice needed): ``whoami`` returns the string
``ice:<adapter id>``, the built-ins answer as usual.
"""

from __future__ import annotations

import sys

import Ice


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    assert len(data) < 255
    return bytes((len(data),)) + data


def server(locator: str, adapter_id: str, group: str | None) -> int:
    # Ice.* properties as command-line options, the adapter's set before it is
    # made: the forms Ice 3.7 and 3.8 share.
    with Ice.initialize(["icegrid_peer", f"--Ice.Default.Locator={locator}"]) as communicator:
        properties = communicator.getProperties()
        properties.setProperty("Hello.Endpoints", "tcp -h 127.0.0.1")
        properties.setProperty("Hello.AdapterId", adapter_id)
        if group:
            properties.setProperty("Hello.ReplicaGroupId", group)
        adapter = communicator.createObjectAdapter("Hello")
        proxy = adapter.add(_Servant(f"ice:{adapter_id}"), Ice.stringToIdentity("hello"))
        adapter.activate()  # registers with the locator before returning
        print("READY", communicator.proxyToString(proxy), flush=True)
        sys.stdin.read()
    return 0


class _Servant(Ice.Blobject):
    def __init__(self, name: str) -> None:
        self.name = name

    def ice_invoke(self, params: bytes, current: Ice.Current) -> tuple[bool, bytes]:
        if current.operation == "whoami":
            body = _string(self.name)
            return True, (6 + len(body)).to_bytes(4, "little") + b"\x01\x01" + body
        raise Ice.OperationNotExistException()


def client(locator: str, text: str) -> int:
    args = ["icegrid_peer", f"--Ice.Default.Locator={locator}",
            "--Ice.Default.InvocationTimeout=20000"]
    with Ice.initialize(args) as communicator:
        try:
            proxy = communicator.stringToProxy(text)
            ok, out = proxy.ice_invoke("whoami", Ice.OperationMode.Normal,
                                       b"\x06\x00\x00\x00\x01\x01")
            if not ok:
                print("ERROR user exception", flush=True)
                return 1
            size = out[6]
            print("OK", out[7:7 + size].decode("utf-8"), flush=True)
            return 0
        except Ice.Exception as error:
            print("ERROR", type(error).__name__, str(error).replace("\n", " "), flush=True)
            return 1


if __name__ == "__main__":
    if sys.argv[1] == "server":
        sys.exit(server(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None))
    sys.exit(client(sys.argv[2], sys.argv[3]))
